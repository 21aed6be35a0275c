"""Corrupted training labels: the record made once per experiment and re-applied on reading.

An experiment trained with a label-corruption probability p replaces a fixed fraction p of
its training labels by other classes, once, and stores which (`label_corruption.npz`
beside `experiment.json`, named by the meta's `extra["label_corruption_file"]`). The runs'
correctness is with respect to those trained-on labels, so every reader applies the record.
No TensorFlow and no dataset access here: the record is part of the release layout.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from heldout._core.atomic import write_npz_atomic
from heldout._core.npz import load_npz
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


def trained_labels(experiment, labels: np.ndarray, split: str = "train") -> np.ndarray:
    """`labels` (the dataset's clean labels of `split`, in index order) as `experiment`'s
    models were trained on them: corrupted where the experiment records a corruption.

    Args:
      experiment: a `heldout.release.layout.Experiment` or an experiment folder.
      labels: the clean labels of `split`.
      split: test labels are never corrupted and come back unchanged.

    Returns:
      int labels in index order.

    Raises:
      LabelCorruptionError: the experiment's record is unreadable or inconsistent.
    """
    corruption = experiment_label_corruption(experiment)
    if corruption is None or split != "train":
        return np.asarray(labels)
    return corruption.apply(labels)
