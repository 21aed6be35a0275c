"""The papers' per-class analyses of C-scores (`heldout analyze`; docs/cli.md)."""

from heldout.cli.main import run_command

run_command("analyze")
