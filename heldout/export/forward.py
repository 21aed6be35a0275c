"""`numpy_forward`: the logits of an export in pure numpy, the executable specification.

Float64 inside, walking the tensors by name, so a PyTorch or JAX port can follow it line
by line. Padding differs by model: SmallInception uses TensorFlow's "SAME" (for stride 2
the extra row/column goes at the end); Sonnet's ResNet-50 pads (k - 1) // 2 before and
k // 2 after, then "VALID"; the ResNet's 3x3 max pool is TensorFlow "SAME".
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from heldout.errors import ModelError
from heldout.export.format import BATCH_NORM_EPSILON, ExportedModel
from heldout.export.safetensors import load_export

_RESNET_STRIDES = (1, 2, 2, 2)  # snt.nets.ResNet: the first block of each group


class _Tensors:
    """Tensors by name, as float64; remembers which were used, so none can be left over."""

    def __init__(self, tensors: Mapping[str, np.ndarray], where: str):
        self._tensors = tensors
        self._where = where
        self.used: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._tensors:
            raise ModelError(f"{self._where}: no tensor {name!r}; the export is incomplete")
        self.used.add(name)
        return np.asarray(self._tensors[name], dtype=np.float64)

    def check_all_used(self) -> None:
        unused = sorted(set(self._tensors) - self.used)
        if unused:
            raise ModelError(
                f"{self._where}: {len(unused)} tensor(s) the forward pass does not use, e.g. "
                f"{unused[:5]}: another architecture than model.json says?"
            )


def _tf_same(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv(x: np.ndarray, w: np.ndarray, stride: int, padding: str, name: str) -> np.ndarray:
    """2-D convolution, NHWC input and HWIO kernel; `padding` "tf_same" or "sonnet_same"."""
    kh, kw, cin, _ = w.shape
    if x.shape[-1] != cin:
        raise ModelError(f"{name}: input has {x.shape[-1]} channels, the kernel expects {cin}")
    if padding == "tf_same":
        pad_h, pad_w = _tf_same(x.shape[1], kh, stride), _tf_same(x.shape[2], kw, stride)
    else:  # Sonnet's pad.same, then VALID
        pad_h, pad_w = ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
    x = np.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    if kh == kw == 1:
        return x[:, ::stride, ::stride, :] @ w[0, 0]
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    # windows: [B, H_out, W_out, C_in, kh, kw]
    return np.tensordot(windows, w, axes=([4, 5, 3], [0, 1, 2]))


def _batch_norm(x: np.ndarray, t: _Tensors, name: str, epsilon: float) -> np.ndarray:
    mean = t[f"{name}/moving_mean/average"].reshape(-1)
    variance = t[f"{name}/moving_variance/average"].reshape(-1)
    return (x - mean) / np.sqrt(variance + epsilon) * t[f"{name}/scale"] + t[f"{name}/offset"]


def _max_pool_tf_same(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    pad_h, pad_w = _tf_same(x.shape[1], size, stride), _tf_same(x.shape[2], size, stride)
    x = np.pad(x, ((0, 0), pad_h, pad_w, (0, 0)), constant_values=-np.inf)
    windows = sliding_window_view(x, (size, size), axis=(1, 2))[:, ::stride, ::stride]
    return windows.max(axis=(-2, -1))


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _linear(x: np.ndarray, t: _Tensors, name: str) -> np.ndarray:
    return x @ t[f"{name}/w"] + t[f"{name}/b"]


def _small_inception(x: np.ndarray, t: _Tensors, epsilon: float) -> np.ndarray:
    """Conv(3x3, 96) -> 3 stages of concat(1x1, 3x3) blocks (+ stride-2 conv) -> max -> Linear."""

    def conv_bn(x, name, stride=1):
        y = _conv(x, t[f"{name}/conv/w"], stride, "tf_same", name)
        return _relu(_batch_norm(y, t, f"{name}/bn", epsilon))

    x = conv_bn(x, "conv1")
    for stage in ("stage1", "stage2", "stage3"):
        block = 0
        while f"{stage}/_body/{block}/conv1x1/conv/w" in t:
            prefix = f"{stage}/_body/{block}"
            x = np.concatenate(
                [conv_bn(x, f"{prefix}/conv1x1"), conv_bn(x, f"{prefix}/conv3x3")], axis=-1
            )
            block += 1
        if block == 0:
            raise ModelError(f"no blocks in {stage}: not a SmallInception export")
        if f"{stage}/_downsample/conv/w" in t:
            x = conv_bn(x, f"{stage}/_downsample", stride=2)
    return _linear(x.max(axis=(1, 2)), t, "_pred")  # global max pooling


def _resnet50(x: np.ndarray, t: _Tensors, epsilon: float) -> np.ndarray:
    """snt.nets.ResNet50 (v1): 7x7/2 conv, 3x3/2 max pool, 4 groups of bottlenecks, mean."""
    if "_final_batchnorm/scale" in t:
        raise ModelError(
            "a ResNet v2 export (final batchnorm); only v1 (Sonnet's default) is known"
        )
    x = _conv(x, t["_initial_conv/w"], 2, "sonnet_same", "_initial_conv")
    x = _relu(_batch_norm(x, t, "_initial_batchnorm", epsilon))
    x = _max_pool_tf_same(x, 3, 2)
    for group, group_stride in enumerate(_RESNET_STRIDES):
        block = 0
        while f"_block_groups/{group}/_blocks/{block}/_layers/0/0/w" in t:
            prefix = f"_block_groups/{group}/_blocks/{block}"
            stride = group_stride if block == 0 else 1
            shortcut = x
            if f"{prefix}/_proj_conv/w" in t:
                shortcut = _conv(x, t[f"{prefix}/_proj_conv/w"], stride, "sonnet_same", prefix)
                shortcut = _batch_norm(shortcut, t, f"{prefix}/_proj_batchnorm", epsilon)
            y = x
            for layer in range(3):  # 1x1, 3x3 (with the block's stride), 1x1
                name = f"{prefix}/_layers/{layer}"
                y = _conv(y, t[f"{name}/0/w"], stride if layer == 1 else 1, "sonnet_same", name)
                y = _batch_norm(y, t, f"{name}/1", epsilon)
                if layer < 2:
                    y = _relu(y)
            x = _relu(y + shortcut)
            block += 1
        if block == 0:
            raise ModelError(f"no blocks in block group {group}: not a ResNet-50 export")
    return _linear(x.mean(axis=(1, 2)), t, "_logits")


def _mlp(x: np.ndarray, t: _Tensors) -> np.ndarray:
    """Flatten (row-major) -> [Linear -> ReLU] per hidden layer -> Linear."""
    x = x.reshape(x.shape[0], -1)
    layer = 1
    while f"hidden{layer}/w" in t:
        x = _relu(_linear(x, t, f"hidden{layer}"))
        layer += 1
    return _linear(x, t, "logits")


def numpy_forward(
    model: ExportedModel | str | os.PathLike, images: np.ndarray, meta: dict | None = None
) -> np.ndarray:
    """Logits of an exported model in pure numpy: the reference implementation.

    Args:
      model: an `ExportedModel`, an export folder, or a tensor dict (then `meta` gives at
        least `arch`).
      images: float [B, H, W, C], preprocessed as `model.json` says (e.g. CIFAR: / 255).
        SmallInception and ResNet-50 take any H, W; the MLP its training shape.
      meta: the export's description when `model` is a tensor dict.

    Returns:
      float32 [B, num_classes] logits (computed in float64).

    Raises:
      ModelError: unknown architecture, images of the wrong rank or channels, a tensor
        missing, or tensors the architecture does not use (an incomplete or mislabeled
        export).
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_export(model)
    if isinstance(model, ExportedModel):
        tensors, meta, where = model.tensors, model.meta, str(model.path or "<export>")
    else:
        tensors, where = model, "<tensors>"
        if not meta or "arch" not in meta:
            raise ModelError("numpy_forward on a tensor dict needs meta={'arch': ...}")
    images = np.asarray(images)
    if images.ndim != 4:
        raise ModelError(f"images must be [B, H, W, C], got shape {images.shape}")
    x = images.astype(np.float64)
    t = _Tensors(tensors, where)
    epsilon = float(meta.get("batch_norm_epsilon", BATCH_NORM_EPSILON))
    arch = str(meta["arch"])
    if arch == "small_inception":
        logits = _small_inception(x, t, epsilon)
    elif arch == "resnet50":
        logits = _resnet50(x, t, epsilon)
    elif arch == "mlp" or arch.startswith("mlp:"):
        expected = int(np.prod(t["hidden1/w"].shape[:1]))
        if int(np.prod(images.shape[1:])) != expected:
            raise ModelError(
                f"the MLP takes images of {expected} values, got {images.shape[1:]} "
                f"(model.json: input {meta.get('input', {}).get('image_shape')})"
            )
        logits = _mlp(x, t)
    else:
        raise ModelError(f"{where}: unknown architecture {arch!r}")
    t.check_all_used()
    return logits.astype(np.float32)
