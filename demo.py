"""Restore released runs, re-evaluate them, cross-check every prediction (`heldout demo`)."""

from heldout.cli.main import run_command

run_command("demo")
