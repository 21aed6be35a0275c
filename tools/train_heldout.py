"""Train heldout models into the released layout (`heldout train`; docs/cli.md)."""

from heldout.cli.main import run_command

run_command("train")
