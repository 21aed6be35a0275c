"""A scores file as a CSV table, one row per training example (`heldout table`)."""

from heldout.cli.main import run_command

if __name__ == "__main__":  # not on import (Dask workers spawn with this as __main__)
    run_command("table")
