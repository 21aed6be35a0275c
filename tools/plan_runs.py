"""How many runs per ratio are enough (`heldout plan-runs`; docs/cli.md)."""

from heldout.cli.main import run_command

run_command("plan-runs")
