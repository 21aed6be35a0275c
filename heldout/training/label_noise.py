"""Corrupted training labels: made once per experiment, recorded, and re-applied on reading.

An experiment trained with `--label_corrupt_prob p` replaces a fixed fraction p of the
training labels by a different, random class, once, so that every run of the experiment
sees the same corrupted dataset. `p = 1` is the random-labels experiment of Zhang et al.
(2017), "Understanding deep learning requires rethinking generalization": every label is
redrawn uniformly over all classes, independently of the image and of its original label
(a "different class" rule at p = 1 would make the labels anti-correlated with the truth,
not random); about 1/C of the redrawn labels equal the original, and the record lists the
others, the examples whose label changed. The corruption is stored beside `experiment.json` as
`label_corruption.npz` (`indices`, `original_labels`, `new_labels`), and the experiment's
meta names that file (`extra["label_corruption_file"]`). The runs' `correctness_train` /
`correctness_removed` are with respect to the labels the models were trained on, so
anything that re-evaluates a run (demo.py) must use `experiment_labels` or
`relabeled_source`, and detection of the corrupted examples can be scored against
`indices`.

No TensorFlow here: reading an experiment's labels stays cheap.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from heldout._core.atomic import write_npz_atomic
from heldout._core.npz import load_npz
from heldout.datasets.base import ArraySource, ArraySplit, DataSource
from heldout.errors import LabelCorruptionError
from heldout.release import layout as release

LABEL_CORRUPTION_FILE = "label_corruption.npz"
META_KEY = "label_corruption_file"  # key in ExperimentMeta.extra naming the file
_KEYS = ("indices", "original_labels", "new_labels")


@dataclasses.dataclass(frozen=True)
class LabelCorruption:
    """Which training examples got which wrong label (all int64, sorted by index)."""

    indices: np.ndarray
    original_labels: np.ndarray
    new_labels: np.ndarray

    def __post_init__(self):
        sizes = {self.indices.shape, self.original_labels.shape, self.new_labels.shape}
        if len(sizes) != 1 or self.indices.ndim != 1:
            raise LabelCorruptionError(
                f"indices, original_labels and new_labels must be 1-D and of equal length; "
                f"got shapes {self.indices.shape}, {self.original_labels.shape}, "
                f"{self.new_labels.shape}"
            )
        if np.any(self.original_labels == self.new_labels):
            raise LabelCorruptionError("a corrupted label equals its original label")
        if self.indices.size and np.any(np.diff(self.indices) <= 0):
            raise LabelCorruptionError("indices must be strictly increasing")

    @property
    def num_corrupted(self) -> int:
        return int(self.indices.size)

    def mask(self, num_train: int) -> np.ndarray:
        """bool[num_train]: True for the corrupted examples (the positives for detection)."""
        mask = np.zeros(num_train, dtype=bool)
        mask[self.indices] = True
        return mask

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """The corrupted copy of `labels` (the clean training labels, index order).

        Checks that `labels` holds the recorded original labels, which catches a different
        dataset or a different example order.
        """
        labels = np.asarray(labels)
        if self.indices.size and self.indices[-1] >= labels.size:
            raise LabelCorruptionError(
                f"corruption refers to example {self.indices[-1]} but the dataset has only "
                f"{labels.size} training labels"
            )
        differ = np.flatnonzero(labels[self.indices] != self.original_labels)
        if differ.size:
            raise LabelCorruptionError(
                f"{differ.size} recorded original labels differ from the dataset's (first at "
                f"index {self.indices[differ[0]]}): a different dataset or example order "
                "than the experiment was trained on"
            )
        corrupted = labels.copy()
        corrupted[self.indices] = self.new_labels
        return corrupted


def corrupt_labels(
    labels: np.ndarray, prob: float, num_classes: int, rng: np.random.Generator
) -> LabelCorruption:
    """Corrupts a fraction `prob` of the labels; `prob = 1` makes every label random.

    * `prob < 1`: round(prob * N) examples, chosen uniformly, get a uniformly drawn other
      class (exactly that many labels change). Kept as first written, draw for draw, so
      experiments trained before `prob = 1` was allowed are reproduced exactly.
    * `prob = 1`: every label is redrawn uniformly over the `num_classes` classes,
      independently of the original ("random labels"); the record holds the examples
      whose label changed (about N (C - 1) / C of them).

    Args:
      labels: the clean training labels, in index order.
      prob: the fraction of labels to corrupt, in [0, 1].
      num_classes: the number of classes (at least 2: a wrong label must exist).
      rng: the experiment's corruption generator (`heldout.training.plan.corruption_rng`).

    Returns:
      Which examples got which new label.

    Raises:
      LabelCorruptionError: `prob` or `num_classes` out of range.
    """
    if not 0.0 <= prob <= 1.0:
        raise LabelCorruptionError(f"label corruption probability must be in [0, 1], got {prob}")
    if num_classes < 2:
        raise LabelCorruptionError(f"need at least 2 classes to corrupt labels, got {num_classes}")
    labels = np.asarray(labels, dtype=np.int64)
    if prob == 1.0:
        redrawn = rng.integers(0, num_classes, size=labels.size)
        indices = np.flatnonzero(redrawn != labels).astype(np.int64)
        return LabelCorruption(indices, labels[indices], redrawn[indices].astype(np.int64))
    count = int(round(prob * labels.size))
    indices = np.sort(rng.choice(labels.size, size=count, replace=False)).astype(np.int64)
    original = labels[indices]
    # A shift of 1..C-1 classes: uniform over the C-1 wrong labels.
    new = (original + rng.integers(1, num_classes, size=count)) % num_classes
    return LabelCorruption(indices, original, new.astype(np.int64))


def save_label_corruption(path: str | os.PathLike, corruption: LabelCorruption) -> None:
    """Writes the record atomically (temporary name, then rename)."""
    write_npz_atomic(path, {key: getattr(corruption, key) for key in _KEYS})


def load_label_corruption(path: str | os.PathLike) -> LabelCorruption:
    """Reads a record written by `save_label_corruption` (never unpickles).

    Raises:
      LabelCorruptionError: the file is missing, unreadable, lacks a key, or its arrays
        are inconsistent (the message starts with the file).
    """
    arrays = load_npz(
        path, keys=_KEYS, error=LabelCorruptionError, what="a label corruption record"
    )
    for key in _KEYS:
        if not np.issubdtype(arrays[key].dtype, np.integer):
            raise LabelCorruptionError(
                f"{path}: {key} must hold integers, got dtype {arrays[key].dtype}"
            )
    try:
        return LabelCorruption(**{key: arrays[key].astype(np.int64) for key in _KEYS})
    except LabelCorruptionError as error:
        raise LabelCorruptionError(f"{path}: {error}") from None


def _dir_and_meta(experiment):
    """(folder, meta) of a `heldout.release.layout.Experiment`, or of an experiment folder path."""
    if isinstance(experiment, (str, os.PathLike)):
        folder = Path(experiment)
        return folder, release.read_experiment_meta(folder)
    return Path(experiment.path), experiment.meta


def experiment_label_corruption(experiment) -> LabelCorruption | None:
    """The experiment's recorded corruption, or None when it was trained on clean labels.

    `experiment`: a `heldout.release.layout.Experiment` or an experiment folder (for a run:
    `run.experiment_dir`).
    """
    folder, meta = _dir_and_meta(experiment)
    name = meta.extra.get(META_KEY)
    if not name:
        return None
    return load_label_corruption(folder / name)


def experiment_labels(
    experiment, labels: np.ndarray | None = None, split: str = "train"
) -> np.ndarray:
    """The labels `experiment`'s models were trained (and scored) on, in index order.

    `labels`: the dataset's clean labels of `split` in the experiment's index order; when
    None they are loaded from the experiment's recorded dataset (`experiment_source`).
    Test labels are never corrupted and come back unchanged.
    """
    if labels is None:
        return experiment_source(experiment).load_arrays(split).labels
    corruption = experiment_label_corruption(experiment)
    if corruption is None or split != "train":
        return np.asarray(labels)
    return corruption.apply(labels)


def experiment_source(
    experiment, dataset: str | None = None, data_dir: str | os.PathLike | None = None
) -> DataSource:
    """The data an experiment was trained on, with its trained-on (corrupted) labels.

    The source name and data_dir come from the experiment's meta (`dataset`,
    `index_order`, `extra["data_dir"]`) unless given.
    """
    from heldout.datasets import source_for_meta

    _, meta = _dir_and_meta(experiment)
    return relabeled_source(experiment, source_for_meta(meta, dataset, data_dir))


class RelabeledSource(ArraySource):
    """A source whose training labels are replaced, everything else as in `base`.

    Serves its splits from `base.load_arrays`, through `ArraySource.as_dataset`: the same
    float32 scaling to [0, 1] as the MNIST-like and CIFAR sources.
    """

    def __init__(self, base: DataSource, corruption: LabelCorruption):
        super().__init__(base.name, base.num_classes, base.image_shape, splits=base.splits)
        self.base = base
        self.corruption = corruption

    def _load(self, split: str) -> ArraySplit:
        arrays = self.base.load_arrays(split)
        if split != "train":
            return arrays
        return ArraySplit(
            images=arrays.images,
            labels=self.corruption.apply(arrays.labels),
            original_index=arrays.original_index,
        )


def relabeled_source(experiment, source: DataSource) -> DataSource:
    """`source` with `experiment`'s corrupted training labels (itself when there are none).

    `experiment`: a `heldout.release.layout.Experiment` or an experiment folder path.

    Use it to re-evaluate a run's checkpoint so that correctness is measured against the
    labels the run was trained on, as its aux arrays are.
    """
    corruption = experiment_label_corruption(experiment)
    return source if corruption is None else RelabeledSource(source, corruption)
