"""Out-of-sample pred_probs and labels for cleanlab (`heldout export-pred-probs`)."""

from heldout.cli.main import run_command

if __name__ == "__main__":  # not on import (Dask workers spawn with this as __main__)
    run_command("export-pred-probs")
