"""The data and label-noise flags that `train_heldout` and `kernel_interpolation` share.

Both commands learn from the same MNIST-like training sets, so `--dataset`, `--data_dir`,
`--label_corrupt_prob` and `--seed` mean the same in both: the same folder is read, and
the same seed and probability give the same corrupted labels
(`heldout.training.label_noise`, drawn from `heldout.training.plan.corruption_rng`), so a
kernel fit and a trained experiment can be compared on identical random labels.

    train_flags.define_flags()                     # at import of the command module
    options = train_flags.data_options()           # after flag parsing
"""

from __future__ import annotations

import dataclasses

from absl import flags

from heldout.errors import UsageError
from heldout.training.config import DATASETS  # no TensorFlow behind this import

FLAGS = flags.FLAGS

_defined: set[int] = set()  # id() of the FlagValues the group was defined in


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines --dataset, --data_dir, --label_corrupt_prob, --seed (once per FlagValues)."""
    if id(flag_values) in _defined:
        return
    _defined.add(id(flag_values))
    fv = {"flag_values": flag_values}
    flags.DEFINE_enum("dataset", "fashion_mnist", list(DATASETS), "Dataset to learn.", **fv)
    flags.DEFINE_string(
        "data_dir",
        None,
        "Folder of IDX files, or a prepared TFDS data_dir. Default: Debian's Fashion-MNIST "
        "IDX folder (/usr/share/datasets/fashion-mnist). Recorded as an absolute path.",
        **fv,
    )
    flags.DEFINE_float(
        "label_corrupt_prob",
        0.0,
        "Fraction of training labels corrupted, once (fixed by --seed). Below 1: that "
        "fraction gets a random other label; 1: every label is redrawn uniformly over all "
        "classes (random labels, independent of the images).",
        **fv,
    )
    flags.DEFINE_integer(
        "seed",
        0,
        "Root of every random choice: label corruption, and for training also subsets, "
        "initialisations and shuffling.",
        **fv,
    )


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """What the shared flags ask for."""

    dataset: str
    data_dir: str | None
    label_corrupt_prob: float
    seed: int


def data_options(flag_values: flags.FlagValues = FLAGS) -> DataOptions:
    """The shared flags' values, checked.

    Raises:
      UsageError: --label_corrupt_prob outside [0, 1] (exit status 2).
    """
    fv = flag_values
    if not 0.0 <= fv.label_corrupt_prob <= 1.0:
        raise UsageError(f"--label_corrupt_prob must be in [0, 1], got {fv.label_corrupt_prob:g}")
    return DataOptions(fv.dataset, fv.data_dir, fv.label_corrupt_prob, fv.seed)
