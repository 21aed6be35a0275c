"""Build the toolkit's models by name, and create their variables before a restore.

    model = build_model("small_inception", 10)
    ensure_variables(model)            # variables exist; a checkpoint can be restored

Sonnet creates variables on the first call, so "built" means "called once"; that call is
made here, in one place, on the smallest input the variable shapes allow.
"""

from __future__ import annotations

import numpy as np
import sonnet as snt
import tensorflow as tf

from heldout.errors import ModelError
from heldout.models.inception import SmallInception
from heldout.models.mlp import MLP
from heldout.models.naming import canonical_arch, mlp_hidden_sizes
from heldout.models.resnet import ResNet50

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


def build_model(arch: str, num_classes: int) -> snt.Module:
    """A fresh model with new random weights (variables are created on the first call).

    Args:
      arch: one of `ARCHS` (or an alias such as "inception", "resnet-50"), or
        `mlp:<hidden sizes>` for an MLP with other hidden layers (e.g. `mlp:512`).
      num_classes: outputs of the classifier (10 for CIFAR-10, 100, 1000 for ImageNet).

    Returns:
      The model, called as `model(images, is_training=False)` -> logits.

    Raises:
      ModelError: unknown architecture, or fewer than 2 classes.
    """
    arch = canonical_arch(arch)
    num_classes = int(num_classes)
    if arch == "small_inception":
        return SmallInception(num_classes)
    if arch == "resnet50":
        return ResNet50(num_classes)
    return MLP(num_classes, mlp_hidden_sizes(arch))


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
    calling it twice is harmless (inference mode changes no state).

    Args:
      model: the model to build.
      image_shape: [H, W, C] of one image. Needed for models this module does not know,
        and for the MLP when its images are not 28x28x1 (its first layer's shape depends on
        it); None uses the architecture's cheapest shape.

    Raises:
      ModelError: a model of unknown type that has not been called, without image_shape.
    """
    if getattr(model, "_heldout_built", False):
        return
    if image_shape is None:
        arch = arch_of(model)
        if arch is None:
            if model.trainable_variables:
                return  # unknown model that has been called: assume it is built
            raise ModelError(
                f"cannot create the variables of {type(model).__name__}: pass image_shape"
            )
        image_shape = _BUILD_SHAPES[arch]
    model(tf.zeros((1, *image_shape), tf.float32), is_training=False)
    model._heldout_built = True  # plain bool: not tracked, not in checkpoints


def count_parameters(model: snt.Module) -> int:
    """Trainable parameters (the model must be built)."""
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))
