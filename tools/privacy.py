"""Membership inference (LiRA) against an experiment's runs (`heldout privacy`)."""

from heldout.cli.main import run_command

if __name__ == "__main__":  # not on import (Dask workers spawn with this as __main__)
    run_command("privacy")
