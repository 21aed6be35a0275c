"""The export format: folder names, tensor naming and layout, preprocessing, and records.

Constants written into each `model.json` (`LAYOUT`, `PREPROCESSING`) and the records the
export functions return. The writers are `exporter` and `many`, the readers
`safetensors.load_export` and `numpy_forward`.
"""

# An export is a folder holding
# - `model.safetensors`: one tensor per variable the model needs for inference, named by
#   the release's variable path without `model/` and `/.ATTRIBUTES/VARIABLE_VALUE`
#   (`stage1/_body/0/conv1x1/conv/w`), with the checkpoint's shapes and dtypes (float32):
#   convolutions HWIO `[kh, kw, in, out]`; linear layers `w [in, out]`, `b [out]` with
#   `y = x @ w + b`; BatchNorm `scale`, `offset` `[C]` and the moving statistics
#   `moving_mean/average`, `moving_variance/average` `[1, 1, 1, C]`, applied as
#   `(x - mean) / sqrt(variance + epsilon) * scale + offset` (epsilon in `model.json`). The
#   EMA's `_counter` and `_hidden` are training state (the debiased `average` is what
#   evaluation uses) and are left out;
# - `model.json`: architecture, classes, input shape and preprocessing, the layout above,
#   padding rules, and what the export is a result of (checkpoint files with their size and
#   mtime, epoch, global step, the run) plus the sha256 of each exported file;
# - optionally `model.onnx` (tf2onnx), checked against TensorFlow with onnxruntime.

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

FORMAT = "heldout-export"
FORMAT_VERSION = 1
SAFETENSORS_FILE = "model.safetensors"
JSON_FILE = "model.json"
ONNX_FILE = "model.onnx"
EXPORT_FORMATS = ("safetensors", "onnx")
TOLERANCE = 1e-4  # max abs logit difference accepted between two implementations
BATCH_NORM_EPSILON = 1e-5  # Sonnet's default, used by SmallInception and snt.nets.ResNet50
TRAINING_STATE = ("/_counter", "/_hidden")
MODEL_PREFIX = "model/"
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
TMP_PREFIX = ".export-"

# What each architecture is fed (the release's evaluation input), for model.json.
PREPROCESSING = {
    "small_inception": {
        "image_shape": [32, 32, 3],
        "steps": ["uint8 RGB pixels as float32", "divide by 255"],
        "mean": None,
        "std": None,
    },
    "resnet50": {
        "image_shape": [224, 224, 3],
        "steps": [
            "decode JPEG as RGB, resize/crop to 224x224 (heldout.datasets.imagenet)",
            "float32 pixels divided by 255",
            "subtract mean, divide by std (per channel)",
        ],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    },
    "mlp": {
        "image_shape": [28, 28, 1],
        "steps": ["uint8 grayscale pixels as float32", "divide by 255", "flatten row-major"],
        "mean": None,
        "std": None,
    },
}

LAYOUT = {
    "images": "NHWC float32 [B, H, W, C]",
    "convolution": "w: HWIO [kh, kw, in_channels, out_channels], no bias",
    "linear": "w [in, out], b [out]; y = x @ w + b",
    "batch_norm": "(x - moving_mean/average) / sqrt(moving_variance/average + epsilon) "
    "* scale + offset; moving statistics shaped [1, 1, 1, C]",
    "padding": {
        "small_inception": "TensorFlow SAME: total = max((ceil(n / s) - 1) * s + k - n, 0), "
        "before = total // 2, after = total - before",
        "resnet50": "convolutions: (k - 1) // 2 before, k // 2 after, then VALID (Sonnet "
        "pad.same); 3x3 stride-2 max pool: TensorFlow SAME",
    },
    "left_out": "BatchNorm EMA _counter and _hidden (training state)",
}


@dataclasses.dataclass(frozen=True)
class ExportedModel:
    """An export read back: its tensors (by release name) and its `model.json`."""

    tensors: dict[str, np.ndarray]
    meta: dict
    path: Path | None = None

    @property
    def arch(self) -> str:
        return self.meta["arch"]


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """One run exported (or found already exported)."""

    output_dir: Path
    files: tuple[Path, ...]
    reused: bool  # an existing export of the same checkpoint was kept
    checks: dict  # max abs logit differences measured at export time
