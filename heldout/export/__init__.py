"""The released checkpoints outside TensorFlow: safetensors, a numpy forward pass, ONNX.

    export_run("data/cifar10-inception/0.7/0", "exported/0.7/0")
    model = load_export("exported/0.7/0")
    logits = numpy_forward(model, images)          # float32 [B, num_classes]

Modules: `format` (the folder's files, layout and records), `safetensors` (tensors in and
out), `forward` (`numpy_forward`, the reference forward pass), `onnx`, `exporter` (one checkpoint),
`many` (every run of an experiment).
"""

from heldout.export.exporter import (
    Exporter,
    check_formats,
    checkpoint_source,
    export_checkpoint,
    export_run,
)
from heldout.export.format import (
    EXPORT_FORMATS,
    TOLERANCE,
    ExportedModel,
    ExportResult,
)
from heldout.export.forward import numpy_forward
from heldout.export.many import ExperimentExport, export_experiment
from heldout.export.onnx import export_onnx, onnx_forward
from heldout.export.safetensors import load_export, model_tensors, write_safetensors

__all__ = [
    "EXPORT_FORMATS",
    "ExperimentExport",
    "ExportResult",
    "ExportedModel",
    "Exporter",
    "TOLERANCE",
    "check_formats",
    "checkpoint_source",
    "export_checkpoint",
    "export_experiment",
    "export_onnx",
    "export_run",
    "load_export",
    "model_tensors",
    "numpy_forward",
    "onnx_forward",
    "write_safetensors",
]
