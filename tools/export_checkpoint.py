"""Exports released checkpoints as safetensors (+ model.json, optionally ONNX).

  # one run:
  python tools/export_checkpoint.py --model_dir=data/cifar10-inception/0.7/0 --output_dir=exported
  # 100 runs of ratio 0.7, with ONNX beside the safetensors:
  python tools/export_checkpoint.py --experiment_dir=data/cifar10-inception \
      --subset_ratio=0.7 --max_runs=100 --format=safetensors,onnx --output_dir=exported

Tensor names are the release's variable paths (`stage1/_body/0/conv1x1/conv/w`), layout
and preprocessing are in each `model.json`, and `heldout.export.numpy_forward` is a pure
numpy reference forward pass over the file. Rerunning resumes: runs already exported from
the same checkpoint files are kept. The command lives in `heldout.cli.export_checkpoint`.
"""

from heldout.cli.export_checkpoint import run

if __name__ == "__main__":
    run()
