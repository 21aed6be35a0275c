"""The LDS of an attribution against an experiment's runs (`heldout attribution`)."""

from heldout.cli.main import run_command

if __name__ == "__main__":  # not on import (Dask workers spawn with this as __main__)
    run_command("attribution")
