"""Our scores against published ones (`heldout compare`; docs/cli.md)."""

from heldout.cli.main import run_command

if __name__ == "__main__":  # not on import (Dask workers spawn with this as __main__)
    run_command("compare")
