"""The figures of a scores file (`heldout plot`; docs/cli.md)."""

from heldout.cli.main import run_command

run_command("plot")
