"""Class-wise influence blocks from runs, one class at a time, never the dense matrix.

For each class K, the influence of K's training examples on K's test examples,
`[n_train_K, n_test_K]` (`ClassBlock`): runs are kept packed 8 examples to a byte with
the training examples sorted by class, so a block unpacks only its class's slice. The
formula is the dense engine's (`heldout.scores.influence`); writing the blocks to the
published file format is `heldout.published`'s job. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np

from heldout.errors import InconsistentRunError, ScoresError
from heldout.release.aux_arrays import AuxArrays


@dataclasses.dataclass(frozen=True)
class ClassBlock:
    """One class's influence block: rows are its training examples, columns its tests."""

    label: int
    train_index: np.ndarray  # int64 [n_train_K], positions in the training split
    test_index: np.ndarray  # int64 [n_test_K], positions in the test split
    matrix: np.ndarray  # float [n_train_K, n_test_K]


def _labels(values, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer) or values.size == 0:
        raise ScoresError(
            f"{what} must be a non-empty 1-D integer array, got {values.dtype} {values.shape}"
        )
    if values.min() < 0:
        raise ScoresError(f"{what} holds negative labels")
    return values.astype(np.int64)


class _ClassOrder:
    """Positions sorted by class (stable), and where each class starts and ends."""

    def __init__(self, labels: np.ndarray):
        self.order = np.argsort(labels, kind="stable")
        sorted_labels = labels[self.order]
        self.classes, self.starts = np.unique(sorted_labels, return_index=True)
        self.ends = np.append(self.starts[1:], labels.size)

    def span(self, label: int) -> tuple[int, int] | None:
        k = np.searchsorted(self.classes, label)
        if k == self.classes.size or self.classes[k] != label:
            return None
        return int(self.starts[k]), int(self.ends[k])


def _unpack_span(packed: np.ndarray, start: int, stop: int) -> np.ndarray:
    """uint8 [rows, stop - start] 0/1 of columns start..stop of bit-packed rows."""
    first = start // 8
    bits = np.unpackbits(packed[:, first : (stop + 7) // 8], axis=1)
    return bits[:, start - 8 * first : stop - 8 * first]


class ClasswiseInfluenceAccumulator:
    """Streams runs of one subset ratio; yields each class's influence block on demand.

    Args:
      train_labels: int [N_train], the label of each training example in the runs'
        index order (TFDS order for CIFAR; the `index` feature's for ImageNet).
      test_labels: int [N_test], likewise.
      capacity: runs preallocated (the storage doubles when full).
    """

    def __init__(self, train_labels, test_labels, capacity: int = 64):
        self.train_labels = _labels(train_labels, "train_labels")
        self.test_labels = _labels(test_labels, "test_labels")
        self.num_train, self.num_test = self.train_labels.size, self.test_labels.size
        self._train = _ClassOrder(self.train_labels)
        self._test = _ClassOrder(self.test_labels)
        self._masks = np.empty((capacity, (self.num_train + 7) // 8), np.uint8)
        self._tests = np.empty((capacity, (self.num_test + 7) // 8), np.uint8)
        self.num_runs = 0
        self.count_in = np.zeros(self.num_train, np.int32)
        self._correct_in = np.zeros(self.num_train, np.int32)
        self._correct_out = np.zeros(self.num_train, np.int32)
        self.test_correct_count = np.zeros(self.num_test, np.int32)

    def add(self, aux: AuxArrays) -> None:
        """Counts one run and stores its mask and test correctness packed, class-sorted.

        Raises:
          InconsistentRunError: the run's split sizes differ from the labels'.
        """
        if (aux.num_train, aux.num_test) != (self.num_train, self.num_test):
            raise InconsistentRunError(
                f"{aux.source}: has N={aux.num_train}, N_test={aux.num_test}; the labels "
                f"have N={self.num_train}, N_test={self.num_test} (another dataset or split?)"
            )
        if self.num_runs == len(self._masks):
            self._masks = np.concatenate([self._masks, np.empty_like(self._masks)])
            self._tests = np.concatenate([self._tests, np.empty_like(self._tests)])
        mask, train_correct = aux.train_mask(), aux.train_correctness()
        test_correct = aux.test_correctness()
        self._masks[self.num_runs] = np.packbits(mask[self._train.order])
        self._tests[self.num_runs] = np.packbits(test_correct[self._test.order])
        self.count_in += mask
        self._correct_in += mask & train_correct
        self._correct_out += ~mask & train_correct
        self.test_correct_count += test_correct
        self.num_runs += 1

    @property
    def classes(self) -> list[int]:
        """Labels with training examples (in increasing order)."""
        return [int(c) for c in self._train.classes]

    def memorization(self) -> np.ndarray:
        """float64 [N_train]: P(correct | trained) - P(correct | held out); NaN if undefined."""
        self._check_runs()
        count_in = self.count_in.astype(np.float64)
        count_out = self.num_runs - count_in
        with np.errstate(divide="ignore", invalid="ignore"):
            value = self._correct_in / count_in - self._correct_out / count_out
        value[(count_in == 0) | (count_out == 0)] = np.nan
        return value

    def _check_runs(self) -> None:
        if self.num_runs == 0:
            raise ScoresError("no runs were added; class-wise influence needs at least one run")

    def block(self, label: int) -> ClassBlock:
        """Class `label`'s block [n_train_K, n_test_K] (float32), rows in index order.

        A class with no test example gets an [n_train_K, 0] block.
        """
        self._check_runs()
        label = int(label)
        train_span = self._train.span(label)
        if train_span is None:
            raise ScoresError(f"no training example has label {label}")
        test_span = self._test.span(label) or (0, 0)
        runs = self.num_runs
        train_index = self._train.order[train_span[0] : train_span[1]]
        test_index = self._test.order[test_span[0] : test_span[1]]
        masks = _unpack_span(self._masks[:runs], *train_span).astype(np.float32)
        tests = _unpack_span(self._tests[:runs], *test_span).astype(np.float32)
        together = masks.T @ tests  # S: runs with j in and t right, exact in float32
        count_in = self.count_in[train_index].astype(np.float64)
        count_out = runs - count_in
        correct = self.test_correct_count[test_index].astype(np.float64)
        numerator = runs * together.astype(np.float64) - count_in[:, None] * correct[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            matrix = numerator / (count_in * count_out)[:, None]
        matrix[(count_in == 0) | (count_out == 0)] = np.nan
        return ClassBlock(
            label,
            train_index.astype(np.int64),
            test_index.astype(np.int64),
            matrix.astype(np.float32),
        )

    def blocks(self, classes: Iterable[int] | None = None) -> Iterator[ClassBlock]:
        """Each class's block in turn (all classes with training examples by default)."""
        for label in self.classes if classes is None else classes:
            yield self.block(label)


def compute_classwise_influence(
    runs: Iterable[AuxArrays], train_labels, test_labels
) -> ClasswiseInfluenceAccumulator:
    """An accumulator fed with `runs` (all of one subset ratio); read blocks from it.

    Args:
      runs: the runs' aux arrays, all of one subset ratio.
      train_labels: int [N_train], each training example's label in the runs' index order.
      test_labels: int [N_test], likewise.

    Returns:
      The `ClasswiseInfluenceAccumulator`: `block(label)`, `blocks()`, `memorization()`.

    Raises:
      ScoresError: labels that are not a non-empty 1-D array of non-negative integers.
      InconsistentRunError: a run whose split sizes differ from the labels'.
    """
    accumulator = ClasswiseInfluenceAccumulator(train_labels, test_labels)
    for aux in runs:
        accumulator.add(aux)
    return accumulator


__all__ = ["ClassBlock", "ClasswiseInfluenceAccumulator", "compute_classwise_influence"]
