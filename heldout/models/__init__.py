"""Models of the released (and our own) heldout-training experiments.

    build_model(arch, num_classes)      # arch in ARCHS
    arch_for_experiment(name_or_meta)   # -> (arch, num_classes), from the experiment name
    ensure_variables(model)             # create the variables with a tiny dummy batch

All models are called as `model(images, is_training=False)` and return logits.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import sonnet as snt
import tensorflow as tf

from heldout import registry
from heldout.models.inception import SmallInception
from heldout.models.mlp import MLP
from heldout.models.resnet import ResNet50

ARCHS = ("small_inception", "resnet50", "mlp")

_ALIASES = {
    "small_inception": "small_inception",
    "smallinception": "small_inception",
    "inception": "small_inception",
    "resnet50": "resnet50",
    "resnet_50": "resnet50",
    "resnet-50": "resnet50",
    "mlp": "mlp",
}

# Input shapes that create the variables cheaply. Variable shapes of the convolutional
# models do not depend on H and W; the MLP's first layer does (flattened 28x28x1).
_BUILD_SHAPES = {
    "small_inception": (8, 8, 3),
    "resnet50": (32, 32, 3),
    "mlp": (28, 28, 1),
}

# What each architecture is normally fed (the release's input shape).
IMAGE_SHAPES = {
    "small_inception": (32, 32, 3),
    "resnet50": (224, 224, 3),
    "mlp": (28, 28, 1),
}


def canonical_arch(arch: str) -> str:
    """Normalizes an architecture name; unknown names raise with the known ones."""
    key = str(arch).strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    return _ALIASES[key]


def build_model(arch: str, num_classes: int) -> snt.Module:
    """A fresh model (variables are created on the first call)."""
    arch = canonical_arch(arch)
    num_classes = int(num_classes)
    if arch == "small_inception":
        return SmallInception(num_classes)
    if arch == "resnet50":
        return ResNet50(num_classes)
    return MLP(num_classes)


def arch_of(model: snt.Module) -> str | None:
    """The architecture name of a model built by `build_model`, else None."""
    if isinstance(model, SmallInception):
        return "small_inception"
    if isinstance(model, snt.nets.ResNet):
        return "resnet50"
    if isinstance(model, MLP):
        return "mlp"
    return None


def ensure_variables(model: snt.Module, image_shape: tuple[int, int, int] | None = None) -> None:
    """Creates all of the model's variables by calling it once on a zero image.

    Sonnet creates most variables on the first call (`snt.BatchNorm` creates its scale,
    offset and moving statistics then; only the moving averages' counters exist before), so
    `model.variables` being non-empty does not mean the model is built. Uses a tiny input
    where the variable shapes allow it (SmallInception/ResNet-50), so this is cheap and
    calling it twice is harmless (inference mode changes no state). Pass `image_shape` for
    models this module does not know.
    """
    if getattr(model, "_heldout_built", False):
        return
    if image_shape is None:
        arch = arch_of(model)
        if arch is None:
            if model.trainable_variables:
                return  # unknown model that has been called: assume it is built
            raise ValueError(
                f"cannot create the variables of {type(model).__name__}: pass image_shape"
            )
        image_shape = _BUILD_SHAPES[arch]
    model(tf.zeros((1, *image_shape), tf.float32), is_training=False)
    model._heldout_built = True  # plain bool: not tracked, not in checkpoints


def _infer_from_name(name: str) -> tuple[str | None, int | None]:
    """Best-effort guess from names like `cifar100-inception` or `mnist-mlp-debug`."""
    n = name.lower()
    arch = None
    if "resnet" in n:
        arch = "resnet50"
    elif "inception" in n:
        arch = "small_inception"
    elif "mlp" in n or "mnist" in n:
        arch = "mlp"
    classes = None
    if re.search(r"cifar-?100(?!\d)", n):
        classes = 100
    elif re.search(r"cifar-?10(?!\d)", n):
        classes = 10
    elif "imagenet" in n:
        classes = 1000
    elif "mnist" in n:
        classes = 10
    return arch, classes


def arch_for_experiment(
    name_or_meta: Any,
    arch: str | None = None,
    num_classes: int | None = None,
) -> tuple[str, int]:
    """(arch, num_classes) for an experiment name or an `ExperimentMeta`-like object.

    Explicit `arch` / `num_classes` win; then the meta's own fields; then the registry entry
    for the name (`cifar10-inception`, `cifar100-inception`, `imagenet-resnet50`); then a
    guess from the name. Raises ValueError naming what could not be determined.
    """
    if isinstance(name_or_meta, str):
        name, meta_arch, meta_classes = name_or_meta, None, None
    else:
        name = str(getattr(name_or_meta, "name", "") or "")
        meta_arch = getattr(name_or_meta, "arch", None)
        meta_classes = getattr(name_or_meta, "num_classes", None)
    base = name.rstrip("/").split("/")[-1]

    reg_arch = reg_classes = None
    if base in registry.EXPERIMENTS:
        spec = registry.EXPERIMENTS[base]
        reg_arch, reg_classes = spec.arch, spec.num_classes
    guess_arch, guess_classes = _infer_from_name(base)

    final_arch = next((a for a in (arch, meta_arch, reg_arch, guess_arch) if a), None)
    final_classes = next(
        (c for c in (num_classes, meta_classes, reg_classes, guess_classes) if c), None
    )
    missing = []
    if final_arch is None:
        missing.append("the architecture (pass --arch / arch=: " + ", ".join(ARCHS) + ")")
    if final_classes is None:
        missing.append("the number of classes (pass num_classes=)")
    if missing:
        raise ValueError(f"cannot infer {' and '.join(missing)} from experiment {name!r}")
    return canonical_arch(final_arch), int(final_classes)


def count_parameters(model: snt.Module) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


__all__ = [
    "ARCHS",
    "IMAGE_SHAPES",
    "MLP",
    "ResNet50",
    "SmallInception",
    "arch_for_experiment",
    "arch_of",
    "build_model",
    "canonical_arch",
    "count_parameters",
    "ensure_variables",
]
