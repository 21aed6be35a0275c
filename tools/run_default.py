"""The embedded default, end to end: train, cross-check, score, plot (`heldout default`)."""

from heldout.cli.main import run_command

run_command("default")
