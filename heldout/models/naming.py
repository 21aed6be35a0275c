"""Which architecture and class count an experiment's runs use, from what names it.

Explicit choices win, then what the experiment records, then the registry of released
experiments, then a guess from the folder name (`cifar100-inception`, `mnist-mlp`). This
module itself uses no TensorFlow: the answer is needed before anything is built.
"""

from __future__ import annotations

import re
from typing import Any

from heldout.errors import ModelError
from heldout.release import registry

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


# The MLP with other hidden sizes than the default (512, 256) is named `mlp:<sizes>`, e.g.
# `mlp:512` (one hidden layer): the name recorded in an experiment's meta then says how
# to rebuild its runs' model, with no other field to read.
_MLP_DEFAULT_HIDDEN = (512, 256)  # heldout.models.mlp.DEFAULT_HIDDEN_SIZES (no TF import here)
_MLP_SPEC = re.compile(r"^mlp:([0-9]+(?:,[0-9]+)*)$")


def mlp_arch(hidden_sizes) -> str:
    """The architecture name of an MLP: `mlp` for hidden sizes (512, 256), else `mlp:<sizes>`.

    Raises:
      ModelError: no hidden layer, or a size below 1.
    """
    sizes = tuple(int(size) for size in hidden_sizes)
    if not sizes or min(sizes) < 1:
        raise ModelError(f"an MLP needs one or more positive hidden sizes, got {sizes}")
    return "mlp" if sizes == _MLP_DEFAULT_HIDDEN else "mlp:" + ",".join(map(str, sizes))


def mlp_hidden_sizes(arch: str) -> tuple[int, ...]:
    """The hidden sizes an MLP architecture name stands for (`mlp` -> (512, 256)).

    Raises:
      ModelError: not an MLP name.
    """
    arch = canonical_arch(arch)
    if arch == "mlp":
        return _MLP_DEFAULT_HIDDEN
    if not arch.startswith("mlp:"):
        raise ModelError(f"{arch!r} is not an MLP architecture")
    return tuple(int(size) for size in arch[4:].split(","))


def canonical_arch(arch: str) -> str:
    """Normalizes an architecture name ("SmallInception", "resnet-50", "mlp:512", ...).

    Raises:
      ModelError: an unknown name; the message lists the known ones.
    """
    key = str(arch).strip().lower()
    spec = _MLP_SPEC.match(key.replace(" ", ""))
    if spec:
        return mlp_arch(int(size) for size in spec.group(1).split(","))
    if key not in _ALIASES:
        raise ModelError(
            f"unknown architecture {arch!r}; known: {', '.join(ARCHS)} "
            "(and mlp:<hidden sizes>, e.g. mlp:512)"
        )
    return _ALIASES[key]


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

    Args:
      name_or_meta: an experiment folder name or path, or an object with `name`, `arch`
        and `num_classes` attributes (`heldout.release.layout.ExperimentMeta`).
      arch: an explicit architecture (wins over everything else).
      num_classes: an explicit class count (wins over everything else).

    Returns:
      (canonical architecture name, class count).

    Raises:
      ModelError: the architecture or the class count cannot be determined (the message
        says what to pass), or the architecture is unknown.
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
        missing.append("the architecture (pass arch=: " + ", ".join(ARCHS) + ")")
    if final_classes is None:
        missing.append("the number of classes (pass num_classes=)")
    if missing:
        raise ModelError(f"cannot infer {' and '.join(missing)} from experiment {name!r}")
    return canonical_arch(final_arch), int(final_classes)
