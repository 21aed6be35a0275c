"""C-scores, memorization and influence into one .npz (`heldout scores`)."""

from heldout.cli.main import run_command

run_command("scores")
