"""Min-norm RBF kernel interpolation of training labels (`heldout kernel`)."""

from heldout.cli.main import run_command

run_command("kernel")
