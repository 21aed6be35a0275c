"""Published score files checked, and ours written in them (`heldout published`)."""

from heldout.cli.main import run_command

run_command("published")
