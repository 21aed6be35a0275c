"""Re-evaluate and cross-check many runs over Dask (`heldout evaluate`)."""

from heldout.cli.main import run_command

run_command("evaluate")
