"""The runs of one ratio as TRAK's and dattri's LDS ground truth (`heldout export-ground-truth`)."""

from heldout.cli.main import run_command

if __name__ == "__main__":  # not on import (Dask workers spawn with this as __main__)
    run_command("export-ground-truth")
