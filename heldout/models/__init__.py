"""Models of the released (and our own) heldout-training experiments.

    build_model(arch, num_classes)      # arch in ARCHS            (models.build)
    arch_for_experiment(name_or_meta)   # -> (arch, num_classes)   (models.naming)
    ensure_variables(model)             # create the variables     (models.build)

All models are called as `model(images, is_training=False)` and return logits. Problems a
user can cause (an unknown architecture, a class count that cannot be inferred) raise
`heldout.errors.ModelError`.
"""

from heldout.models.build import (
    IMAGE_SHAPES,
    arch_of,
    build_model,
    count_parameters,
    ensure_variables,
)
from heldout.models.inception import SmallInception
from heldout.models.mlp import MLP
from heldout.models.naming import ARCHS, arch_for_experiment, canonical_arch
from heldout.models.resnet import ResNet50

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
