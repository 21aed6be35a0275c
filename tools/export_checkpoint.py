"""Released checkpoints as safetensors and ONNX (`heldout export`)."""

from heldout.cli.main import run_command

run_command("export")
