"""Published score files checked, and ours written in them (`heldout published`)."""

from heldout.cli.main import run_command

if __name__ == "__main__":  # not on import (Dask workers spawn with this as __main__)
    run_command("published")
