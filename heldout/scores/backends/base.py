"""What every influence backend shares: the `InfluenceBackend` protocol and the counts.

A backend turns runs of one subset ratio into `Influence`. Each computes the same exact
integer numerator `R * S - c * n_in` and the same float32 scale `1 / (n_in * n_out)`, so
their results agree (bit for bit where their sums are exact; docs/methods.md).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from heldout._core.system import memory_available
from heldout.errors import InconsistentRunError, ScoresError
from heldout.release.aux_arrays import AuxArrays
from heldout.scores.results import Influence

__all__ = [
    "InfluenceAccumulatorLike",
    "InfluenceBackend",
    "InfluenceCounts",
    "InfluenceTooLargeError",
    "default_max_matrix_bytes",
    "finish_topk",
]

_UNKNOWN_MEMORY = 1 << 40  # what the dense-size check allows where memory is unknown


class InfluenceTooLargeError(ScoresError, MemoryError):
    """A dense influence matrix that would not fit in memory (use the top-k mode)."""


@runtime_checkable
class InfluenceAccumulatorLike(Protocol):
    """What a backend's accumulator does: take runs one by one, then give the result."""

    def add(self, aux: AuxArrays) -> None: ...

    def result(self) -> Influence: ...


@runtime_checkable
class InfluenceBackend(Protocol):
    """One way of computing influence, registered under its name
    (`heldout.scores.backends.registry`).

    Attributes:
      name: the registered name ("numpy", "popcount", "tf-gpu"), recorded in results.
    """

    name: str

    def why_unavailable(self) -> str | None:
        """None when the backend can run here; else what is missing, as the end of a
        sentence that starts with "the <name> backend" (cheap: imports nothing heavy)."""
        ...

    def accumulator(
        self,
        topk: int,
        subset_ratio: float | None,
        num_runs: int | None = None,
        stream_dense: bool = False,
        **options,
    ) -> InfluenceAccumulatorLike:
        """A fresh accumulator: 0 for the dense matrix, else `topk` per test example.

        `num_runs` (expected, if known) sizes storage; `stream_dense` asks for a dense
        matrix computed while it is written, where the backend can; `options` are the
        backend's own (unknown ones raise TypeError).
        """
        ...


def default_max_matrix_bytes() -> int:
    """The largest dense matrix allowed by default: the memory available now."""
    available = memory_available()
    return _UNKNOWN_MEMORY if available is None else available


class InfluenceCounts:
    """What every accumulator shares: R, colsum(M), colsum(T) and the stored runs.

    Subclasses set `max_matrix_bytes` and `_new_store()` (the runs' storage, created at
    the first run once N and N_test are known; it has `append(mask, test_correct)`).
    """

    max_matrix_bytes: int

    def __init__(self, subset_ratio: float | None):
        self.subset_ratio = subset_ratio
        self.num_runs = 0
        self.num_train: int | None = None
        self.num_test: int | None = None
        self.count_in: np.ndarray | None = None  # int32 [N]
        self.test_correct_count: np.ndarray | None = None  # int32 [N_test], c
        self._runs = None
        self._taken = False  # result() hands over or drops the buffers: one result only

    def _new_store(self):
        """The runs' storage, with `append(mask, test_correct)`."""
        raise NotImplementedError

    def add(self, aux: AuxArrays) -> None:
        """Counts one run and stores it compactly."""
        if self._taken:
            raise ValueError("result() was already taken from this accumulator")
        if self.num_train is None:
            self.num_train, self.num_test = aux.num_train, aux.num_test
            self.count_in = np.zeros(self.num_train, dtype=np.int32)
            self.test_correct_count = np.zeros(self.num_test, dtype=np.int32)
            self._runs = self._new_store()
        elif (aux.num_train, aux.num_test) != (self.num_train, self.num_test):
            raise InconsistentRunError(
                f"{aux.source}: has N={aux.num_train}, N_test={aux.num_test}; earlier runs "
                f"have N={self.num_train}, N_test={self.num_test}"
            )
        mask, test_correct = aux.train_mask(), aux.test_correctness()
        self.count_in += mask
        self.test_correct_count += test_correct
        self.num_runs += 1
        self._runs.append(mask, test_correct)

    def _check_dense_size(self) -> None:
        needed = 4 * self.num_train * self.num_test
        if needed > self.max_matrix_bytes:
            raise InfluenceTooLargeError(
                f"a dense influence matrix of {self.num_test} x {self.num_train} needs "
                f"{needed / 2**30:.1f} GiB, more than the {self.max_matrix_bytes / 2**30:.1f} "
                "GiB allowed; use the top-k mode (--influence_topk K) instead"
            )

    def _start_result(self) -> None:
        if self._taken:
            raise ValueError("result() was already taken from this accumulator")
        if self.num_runs == 0:
            raise ScoresError("no runs were added; influence needs at least one run")
        self._taken = True

    def _column_scale(self) -> np.ndarray:
        """float32 [N]: 1 / (n_in * n_out), NaN where either count is 0."""
        count_in = self.count_in.astype(np.float64)
        count_out = self.num_runs - count_in
        with np.errstate(divide="ignore"):
            scale = 1.0 / (count_in * count_out)
        scale[~np.isfinite(scale)] = np.nan
        return scale.astype(np.float32)

    def _result(self, **fields) -> Influence:
        self._runs = None
        return Influence(
            subset_ratio=self.subset_ratio,
            num_runs=self.num_runs,
            count_in=self.count_in.copy(),
            count_out=(self.num_runs - self.count_in).astype(np.int32),
            test_correct_count=self.test_correct_count.copy(),
            **fields,
        )


def finish_topk(values: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, value) of running top-k arrays in the final order; padding becomes (-1, NaN).

    Args:
      values: float32 [rows, k], -inf in slots no defined influence filled.
      index: int64 [rows, k], the training example of each value.

    Returns:
      (index int64, value float32), each row by decreasing value, equal values by
      increasing index.
    """
    order = np.lexsort((index, -values), axis=1)
    values = np.take_along_axis(values, order, axis=1)
    index = np.take_along_axis(index, order, axis=1)
    missing = ~np.isfinite(values)
    values[missing] = np.nan
    index[missing] = -1
    return index, values
