"""The released checkpoints outside TensorFlow: safetensors, a numpy forward pass, ONNX.

    export_run("data/cifar10-inception/0.7/0", "exported/0.7/0")
    model = load_export("exported/0.7/0")
    logits = numpy_forward(model, images)          # float32 [B, num_classes]

An export is a folder holding
- `model.safetensors`: one tensor per variable the model needs for inference, named by
  the release's variable path without `model/` and `/.ATTRIBUTES/VARIABLE_VALUE`
  (`stage1/_body/0/conv1x1/conv/w`), with the checkpoint's shapes and dtypes (float32):
  convolutions HWIO `[kh, kw, in, out]`; linear layers `w [in, out]`, `b [out]` with
  `y = x @ w + b`; BatchNorm `scale`, `offset` `[C]` and the moving statistics
  `moving_mean/average`, `moving_variance/average` `[1, 1, 1, C]`, applied as
  `(x - mean) / sqrt(variance + epsilon) * scale + offset` (epsilon in `model.json`). The
  EMA's `_counter` and `_hidden` are training state (the debiased `average` is what
  evaluation uses) and are left out;
- `model.json`: architecture, classes, input shape and preprocessing, the layout above,
  padding rules, and what the export is a result of (checkpoint files with their size and
  mtime, epoch, global step, the run) plus the sha256 of each exported file;
- optionally `model.onnx` (tf2onnx), checked against TensorFlow with onnxruntime.

`numpy_forward` is the executable specification: pure numpy (float64 inside), it walks
the tensors by name, so a PyTorch or JAX port can follow it line by line. Its logits equal
the TensorFlow model's within 1e-4 (tests/test_export.py). Padding differs by model:
SmallInception uses TensorFlow's "SAME" (for stride 2 the extra row/column goes at the
end); Sonnet's ResNet-50 pads (k - 1) // 2 before and k // 2 after, then "VALID"; the
ResNet's 3x3 max pool is TensorFlow "SAME".

A folder is written as a whole (a temporary folder renamed into place), so a crash leaves
either no export or a complete one; an existing export of the same checkpoint is kept
(resuming), one of another checkpoint is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from heldout._core.atomic import atomic_open, commit_dir, make_temp_dir, write_json_atomic
from heldout._core.locks import FileLock
from heldout._core.provenance import file_identity
from heldout.errors import CheckpointError, ModelError, StaleResultError, UsageError

FORMAT = "heldout-export"
FORMAT_VERSION = 1
SAFETENSORS_FILE = "model.safetensors"
JSON_FILE = "model.json"
ONNX_FILE = "model.onnx"
EXPORT_FORMATS = ("safetensors", "onnx")
TOLERANCE = 1e-4  # max abs logit difference accepted between two implementations
BATCH_NORM_EPSILON = 1e-5  # Sonnet's default, used by SmallInception and snt.nets.ResNet50
_TRAINING_STATE = ("/_counter", "/_hidden")
_MODEL_PREFIX = "model/"
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_TMP_PREFIX = ".export-"
_RESNET_STRIDES = (1, 2, 2, 2)  # snt.nets.ResNet: the first block of each group

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


# ---------------------------------------------------------------------------- records


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


# --------------------------------------------------------------------- tensors in/out


def _release_name(key: str) -> str | None:
    """`model/x/y/.ATTRIBUTES/VARIABLE_VALUE` -> `x/y`; None for what is not exported."""
    if not (key.startswith(_MODEL_PREFIX) and key.endswith(_VALUE_SUFFIX)):
        return None
    name = key[len(_MODEL_PREFIX) : -len(_VALUE_SUFFIX)]
    if any(name.endswith(part) for part in _TRAINING_STATE):
        return None
    return name


def model_tensors(model) -> dict[str, np.ndarray]:
    """The inference tensors of a built TensorFlow model, by release variable path.

    Names come from the checkpoint key map (`heldout.models.checkpoints.model_checkpoint_keys`),
    so they are the names of the release's checkpoints.
    """
    from heldout.models.checkpoints import model_checkpoint_keys

    tensors = {}
    for key, variable in model_checkpoint_keys(model).items():
        name = _release_name(key)
        if name is not None:
            tensors[name] = np.ascontiguousarray(variable.numpy())
    return tensors


def _batch_norm_epsilon(model) -> float:
    """The epsilon of the model's BatchNorms (one value; Sonnet's default when none)."""
    import sonnet as snt

    values = {
        float(m._eps)  # noqa: SLF001 - Sonnet keeps it private; the export must record it
        for m in model.submodules
        if isinstance(m, snt.BatchNorm) and hasattr(m, "_eps")
    }
    if len(values) > 1:
        raise ModelError(f"the model's BatchNorms use several epsilons {sorted(values)}")
    return values.pop() if values else BATCH_NORM_EPSILON


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], meta: dict):
    """Writes tensors as safetensors, atomically; `meta` (str -> str) goes in its header."""
    from safetensors.numpy import save

    data = save({name: np.ascontiguousarray(t) for name, t in tensors.items()}, metadata=meta)
    with atomic_open(path, "wb") as f:
        f.write(data)


def load_export(path: str | os.PathLike) -> ExportedModel:
    """Reads an export folder (or its `model.safetensors`, with `model.json` beside it).

    Raises:
      ModelError: a missing or unreadable file, a `model.json` of another format, or a
        safetensors file whose sha256 differs from the one `model.json` records (the two
        files are not of one export).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    tensors_path, json_path = folder / SAFETENSORS_FILE, folder / JSON_FILE
    for needed in (tensors_path, json_path):
        if not needed.is_file():
            raise ModelError(f"{needed}: not found; is {folder} an export folder?")
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"{json_path}: cannot read as JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{json_path}: not a {FORMAT} description")
    recorded = meta.get("files", {}).get(SAFETENSORS_FILE, {}).get("sha256")
    if recorded and recorded != _sha256(tensors_path):
        raise ModelError(
            f"{tensors_path}: its sha256 differs from the one {json_path} records; the two "
            "files are not of one export (copied from different folders?)"
        )
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelError(f"{tensors_path}: cannot read as safetensors ({error})") from None
    return ExportedModel(tensors, meta, folder)


# ------------------------------------------------------------------ numpy forward pass


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


# --------------------------------------------------------------------------- exporting


def _arch_from_checkpoint(shapes: dict[str, list[int]], prefix: Path) -> tuple[str, int]:
    """(architecture, classes) a checkpoint's variables say; MLP hidden sizes included."""
    from heldout.models.checkpoints import checkpoint_arch, checkpoint_num_classes
    from heldout.models.naming import mlp_arch

    arch, classes = checkpoint_arch(shapes), checkpoint_num_classes(shapes)
    if arch is None or classes is None:
        raise CheckpointError(
            f"{prefix}: cannot tell the architecture from its variables; pass arch= "
            "(--arch) and num_classes= (--num_classes)"
        )
    if arch == "mlp":
        sizes, k = [], 1
        while f"model/hidden{k}/b{_VALUE_SUFFIX}" in shapes:
            sizes.append(int(shapes[f"model/hidden{k}/b{_VALUE_SUFFIX}"][0]))
            k += 1
        arch = mlp_arch(sizes)
    return arch, classes


class Exporter:
    """Exports checkpoints of one architecture: the model is built once, restored per run.

    Args:
      arch, num_classes: the architecture (`heldout.models`), e.g. "small_inception", 10.
      formats: any of `EXPORT_FORMATS`; "safetensors" is always written.
      check: after writing, run `numpy_forward` (and onnxruntime for ONNX) on a probe batch
        and refuse the export unless its logits equal TensorFlow's within `TOLERANCE`.
      probe_images: the probe batch [B, H, W, C] (default: 2 uniform [0, 1) images of the
        architecture's input shape, seed 0).
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        formats: Iterable[str] = ("safetensors",),
        check: bool = True,
        probe_images: np.ndarray | None = None,
    ):
        from heldout import models
        from heldout.models.checkpoints import RestoreTarget

        self.formats = check_formats(formats)
        self.arch = models.canonical_arch(arch)
        self.num_classes = int(num_classes)
        self.model = models.build_model(self.arch, self.num_classes)
        self.target = RestoreTarget(self.model)
        self.epsilon = _batch_norm_epsilon(self.model)
        base = "mlp" if self.arch.startswith("mlp") else self.arch
        self.preprocessing = PREPROCESSING[base]
        self.check = check
        shape = tuple(self.preprocessing["image_shape"])
        if probe_images is None:
            probe_images = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
        self.probe_images = np.asarray(probe_images, dtype=np.float32)

    def meta(self, source: dict, info) -> dict:
        from heldout import __version__

        versions = {"heldout": __version__}
        for module in ("tensorflow", "safetensors", "numpy"):
            versions[module] = _version_of(module)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "num_classes": self.num_classes,
            "batch_norm_epsilon": self.epsilon,
            "input": self.preprocessing,
            "output": "logits float32 [B, num_classes]; the prediction is their argmax",
            "layout": {**LAYOUT, "padding": LAYOUT["padding"].get(self.arch, "none")},
            "source": source,
            "epoch": info.epoch,
            "global_step": info.global_step,
            "versions": versions,
        }
        if self.arch.startswith("mlp"):
            meta["hidden_sizes"] = list(self.model.hidden_sizes)
        return meta

    def _tf_logits(self, images: np.ndarray) -> np.ndarray:
        return self.model(images, is_training=False).numpy()

    def write(self, checkpoint: str | os.PathLike, folder: Path, source: dict) -> dict:
        """Restores `checkpoint` and writes the export into `folder`; returns the checks."""
        info = self.target.restore(checkpoint)
        tensors = model_tensors(self.model)
        meta = self.meta(source, info)
        checks: dict[str, Any] = {}
        written = [folder / SAFETENSORS_FILE]
        write_safetensors(written[0], tensors, {"format": FORMAT, "arch": self.arch})
        reference = self._tf_logits(self.probe_images) if self.check else None
        if self.check:
            ours = numpy_forward(ExportedModel(tensors, meta, folder), self.probe_images)
            checks["numpy_vs_tensorflow_max_abs"] = _check_close(ours, reference, "numpy", folder)
        if "onnx" in self.formats:
            written.append(folder / ONNX_FILE)
            export_onnx(self.model, written[-1], self.probe_images.shape[1:])
            if self.check:
                ours = onnx_forward(written[-1], self.probe_images)
                checks["onnx_vs_tensorflow_max_abs"] = _check_close(ours, reference, "ONNX", folder)
        if self.check:
            checks["probe"] = f"{len(self.probe_images)} images {list(self.probe_images.shape[1:])}"
        meta["checks"] = checks
        meta["files"] = {f.name: {"sha256": _sha256(f), "size": f.stat().st_size} for f in written}
        write_json_atomic(folder / JSON_FILE, meta)
        return checks


def _version_of(module: str) -> str | None:
    from importlib import metadata

    names = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "safetensors": ("safetensors",)}
    for name in names.get(module, (module,)):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _check_close(ours: np.ndarray, reference: np.ndarray, what: str, folder: Path) -> float:
    """The max abs difference; refused above TOLERANCE times the logits' scale (>= 1).

    TensorFlow computes in float32, whose own rounding grows with the logits' magnitude
    (and with depth: ~1e-4 for a ResNet-50 with logits of a few units), so large logits
    get a proportionally larger allowance; any real export error is orders larger.
    """
    difference = float(np.max(np.abs(ours.astype(np.float64) - reference)))
    allowed = TOLERANCE * max(1.0, float(np.max(np.abs(reference))))
    if not difference <= allowed:  # also refuses NaN
        raise ModelError(
            f"{folder}: the {what} logits differ from TensorFlow's by up to {difference:.3g} "
            f"(allowed {allowed:.3g}); the export is not faithful, please report"
        )
    return difference


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """The export formats, checked (safetensors always included).

    Raises:
      UsageError: an unknown format.
    """
    chosen = {f.strip().lower() for f in formats if f.strip()}
    unknown = sorted(chosen - set(EXPORT_FORMATS))
    if unknown:
        raise UsageError(f"unknown export format(s) {unknown}; choose from {list(EXPORT_FORMATS)}")
    return tuple(f for f in EXPORT_FORMATS if f in chosen | {"safetensors"})


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


def checkpoint_source(checkpoint: str | os.PathLike, **fields) -> tuple[Path, dict]:
    """(checkpoint prefix, what an export of it is a result of: files, sizes, mtimes)."""
    from heldout.models.checkpoints import checkpoint_files, find_checkpoint

    prefix = find_checkpoint(checkpoint)
    source = {
        "checkpoint": str(prefix.absolute()),
        "checkpoint_files": [file_identity(f) for f in checkpoint_files(prefix)],
        **fields,
    }
    return prefix, source


def _existing(folder: Path, source: dict, formats: tuple[str, ...]) -> bool:
    """True when `folder` holds a complete export of the same source in these formats.

    Raises:
      StaleResultError: `folder` holds something else (another checkpoint's export, or
        files that are not an export); it is never replaced silently.
    """
    json_path = folder / JSON_FILE
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return False
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, ValueError):
        raise StaleResultError(
            f"{folder}: exists and is not a complete export ({JSON_FILE} missing or "
            "unreadable); remove it or choose another output folder"
        ) from None
    recorded = meta.get("source", {})
    if recorded.get("checkpoint_files") != source["checkpoint_files"]:
        raise StaleResultError(
            f"{folder}: holds an export of {recorded.get('checkpoint', 'another checkpoint')} "
            f"(files, sizes or mtimes differ from {source['checkpoint']}); remove it or "
            "choose another output folder"
        )
    missing = [f for f in formats if _FORMAT_FILES[f] not in meta.get("files", {})]
    if missing:
        raise StaleResultError(
            f"{folder}: the export of this checkpoint lacks {missing}; remove the folder to "
            "export it again with them"
        )
    return True


_FORMAT_FILES = {"safetensors": SAFETENSORS_FILE, "onnx": ONNX_FILE}


def export_checkpoint(
    exporter: Exporter, checkpoint: str | os.PathLike, output_dir: str | os.PathLike, **fields
) -> ExportResult:
    """Exports one checkpoint into `output_dir` as a whole (temporary folder, renamed).

    Args:
      exporter: built for the checkpoint's architecture.
      checkpoint: a run folder, its `checkpoints/`, a prefix or an `.index`.
      output_dir: the export folder (must not exist, be empty, or hold an export of the
        same checkpoint files, which is kept).
      fields: recorded in `model.json`'s `source` (e.g. the run and its subset ratio).

    Raises:
      StaleResultError: `output_dir` holds something else.
      CheckpointError: the checkpoint does not fit the exporter's model.
      ModelError: the export's logits differ from TensorFlow's.
    """
    output_dir = Path(output_dir).absolute()
    prefix, source = checkpoint_source(checkpoint, **fields)
    if _existing(output_dir, source, exporter.formats):
        files = tuple(output_dir / _FORMAT_FILES[f] for f in exporter.formats)
        return ExportResult(output_dir, (*files, output_dir / JSON_FILE), True, {})
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(output_dir.parent, f"{_TMP_PREFIX}{output_dir.name}-")
    try:
        checks = exporter.write(prefix, tmp, source)
        if output_dir.is_dir():
            output_dir.rmdir()  # empty (checked above): rename onto it would fail on some OSes
        commit_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = tuple(output_dir / _FORMAT_FILES[f] for f in exporter.formats)
    return ExportResult(output_dir, (*files, output_dir / JSON_FILE), False, checks)


def export_run(
    run_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    arch: str | None = None,
    num_classes: int | None = None,
    formats: Iterable[str] = ("safetensors",),
    check: bool = True,
    probe_images: np.ndarray | None = None,
) -> ExportResult:
    """Exports one run's checkpoint (architecture from its variables unless given).

    `probe_images` are the inputs of the export-time check (see `Exporter`). See
    `export_checkpoint` for the folder written and the errors.
    """
    from heldout.models.checkpoints import find_checkpoint, read_variable_shapes

    prefix = find_checkpoint(run_dir)
    if arch is None or num_classes is None:
        shapes, _ = read_variable_shapes(prefix)
        found_arch, found_classes = _arch_from_checkpoint(shapes, prefix)
        arch, num_classes = arch or found_arch, num_classes or found_classes
    exporter = Exporter(arch, num_classes, formats, check, probe_images)
    return export_checkpoint(exporter, prefix, output_dir, run=str(Path(run_dir).absolute()))


@dataclasses.dataclass(frozen=True)
class ExperimentExport:
    """What `export_experiment` did: exported, kept (already exported), failed runs."""

    exported: tuple[ExportResult, ...]
    reused: tuple[ExportResult, ...]
    failed: tuple[tuple[str, str], ...]  # (run folder, error message)
    without_checkpoint: int  # selected runs that have no checkpoint (aux arrays only)


def export_experiment(
    experiment,
    output_dir: str | os.PathLike,
    subset_ratio: float | None = None,
    max_runs: int | None = None,
    formats: Iterable[str] = ("safetensors",),
    check: bool = True,
    arch: str | None = None,
    num_classes: int | None = None,
    on_result: Callable[[str, ExportResult | None, str | None], None] | None = None,
) -> ExperimentExport:
    """Exports every selected run to `<output_dir>/<subset_ratio>/<run_id>/`.

    Resumable: rerun the same call and runs already exported (same checkpoint files) are
    kept, the others done; each run folder appears complete or not at all. One model is
    built per call and restored run by run. A run that fails (e.g. a truncated checkpoint)
    is recorded and the others go on. An exclusive lock on `<output_dir>/.export.lock`
    keeps a second exporter out; under it, temporaries of an interrupted export are removed.

    Args:
      experiment: `heldout.release.layout.open_experiment(...)`.
      subset_ratio: only runs of this ratio (default: all ratios).
      max_runs: at most this many runs per ratio (in run-id order).
      formats, check: see `Exporter`.
      arch, num_classes: default from the experiment (`heldout.models.arch_for_experiment`).
      on_result: called per run with (run folder, result or None, error message or None).

    Raises:
      LockBusyError: another export into `output_dir` is running.
      UsageError: no run at `subset_ratio`, or max_runs < 1.
    """
    from heldout.models.naming import arch_for_experiment
    from heldout.release.layout import ratio_dir_name

    if max_runs is not None and max_runs < 1:
        raise UsageError(f"max_runs must be at least 1, got {max_runs}")
    ratios = experiment.subset_ratios
    if subset_ratio is not None:
        ratios = tuple(r for r in ratios if abs(r - subset_ratio) < 1e-9)
        if not ratios:
            raise UsageError(
                f"{experiment.path}: no runs at subset ratio {subset_ratio}; ratios present: "
                f"{list(experiment.subset_ratios)}"
            )
    arch, num_classes = arch_for_experiment(experiment.meta, arch, num_classes)
    output_dir = Path(output_dir).absolute()
    output_dir.mkdir(parents=True, exist_ok=True)
    exported, reused, failed, without = [], [], [], 0
    with FileLock(output_dir / ".export.lock", f"exporting checkpoints into {output_dir}"):
        for stale in output_dir.glob(f"*/{_TMP_PREFIX}*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        exporter = Exporter(arch, num_classes, formats, check)
        for ratio in ratios:
            runs = experiment.runs_at(ratio)[: max_runs or None]
            for run in runs:
                if not run.has_checkpoint:
                    without += 1
                    continue
                target = output_dir / ratio_dir_name(ratio) / str(run.run_id)
                try:
                    result = export_checkpoint(
                        exporter,
                        run.path,
                        target,
                        run=str(run.path.absolute()),
                        experiment=str(Path(experiment.path).absolute()),
                        subset_ratio=ratio,
                        run_id=run.run_id,
                    )
                except (CheckpointError, StaleResultError, ModelError, OSError) as error:
                    failed.append((str(run.path), str(error)))
                    if on_result is not None:
                        on_result(str(run.path), None, str(error))
                    continue
                (reused if result.reused else exported).append(result)
                if on_result is not None:
                    on_result(str(run.path), result, None)
    return ExperimentExport(tuple(exported), tuple(reused), tuple(failed), without)


__all__ = [
    "EXPORT_FORMATS",
    "ExperimentExport",
    "ExportResult",
    "ExportedModel",
    "Exporter",
    "TOLERANCE",
    "check_formats",
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
