"""A published score file moved into TFDS order (`heldout map-order`)."""

from heldout.cli.main import run_command

run_command("map-order")
