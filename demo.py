"""Restore released runs, re-evaluate them, cross-check every prediction (`heldout demo`)."""

from heldout.cli.main import run_command

if __name__ == "__main__":  # not on import (Dask workers spawn with this as __main__)
    run_command("demo")
