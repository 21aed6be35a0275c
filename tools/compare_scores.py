"""Our scores against published ones (`heldout compare`; docs/cli.md)."""

from heldout.cli.main import run_command

run_command("compare")
