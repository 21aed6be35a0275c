"""C-score proxies from one training run (`heldout proxies`; docs/cli.md)."""

from heldout.cli.main import run_command

run_command("proxies")
