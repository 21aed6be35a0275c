"""A model as ONNX (tf2onnx) and its logits by onnxruntime: the optional export format."""

from __future__ import annotations

import os

import numpy as np

from heldout._core.atomic import atomic_open
from heldout.errors import UsageError


def export_onnx(model, path: str | os.PathLike, image_shape: tuple[int, ...]) -> None:
    """Converts the model (inference mode) to ONNX with tf2onnx, written atomically.

    The input is `images` float32 [batch, *image_shape] with a free batch size; the
    output is the logits. Opset 17.

    Raises:
      UsageError: tf2onnx is not installed.
    """
    import tensorflow as tf

    try:
        import tf2onnx
    except ImportError:
        raise UsageError("ONNX export needs tf2onnx (pip install tf2onnx onnxruntime)") from None
    function = tf.function(lambda images: model(images, is_training=False))
    spec = (tf.TensorSpec((None, *image_shape), tf.float32, name="images"),)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=17)
    with atomic_open(path, "wb") as f:
        f.write(proto.SerializeToString())


def onnx_forward(path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Logits of an exported `model.onnx`, run by onnxruntime on the CPU."""
    try:
        import onnxruntime
    except ImportError:
        raise UsageError("checking ONNX needs onnxruntime (pip install onnxruntime)") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.asarray(images, dtype=np.float32)})[0]
