"""Streaming counts over runs behind C-scores and memorization (`ScoreAccumulator`).

Only integer counts are accumulated, run by run, so memory does not grow with the number
of runs and results do not depend on the order of runs. Definitions: docs/methods.md; the
binomial standard error is 0 when all n runs agree, so read it with its count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from heldout.errors import InconsistentRunError, ScoresError
from heldout.release.aux_arrays import AuxArrays
from heldout.release.layout import ratio_key
from heldout.scores.results import CScores, Memorization

__all__ = ["ScoreAccumulator", "compute_cscores", "compute_memorization"]


def _mean_and_stderr(successes: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """successes / count and sqrt(p (1 - p) / count), both NaN where count is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = successes / count.astype(np.float64)
        stderr = np.sqrt(mean * (1.0 - mean) / count)
    return mean, stderr


@dataclasses.dataclass
class _RatioCounts:
    """Sufficient statistics of the training split at one subset ratio."""

    num_runs: int
    heldout_count: np.ndarray  # int32 [N]
    heldout_correct: np.ndarray  # int32 [N]
    trained_correct: np.ndarray  # int32 [N]; trained count = num_runs - heldout_count

    @classmethod
    def zeros(cls, num_train: int) -> _RatioCounts:
        return cls(0, *(np.zeros(num_train, dtype=np.int32) for _ in range(3)))


class ScoreAccumulator:
    """Counts, per subset ratio, what C-scores and memorization need; add runs one by one.

    Args:
      subset_ratios: ratios to report even if no run of them gets added (their rows are
        then NaN with count 0, e.g. when every run of a ratio was skipped as bad).
      per_example: False to count only runs (and check their N): what influence alone
        needs of these counts. Its C-scores and memorization are then NaN, never to be
        reported; the per-example sums are skipped.
    """

    def __init__(self, subset_ratios: Sequence[float] = (), per_example: bool = True):
        self._declared = {ratio_key(ratio) for ratio in subset_ratios}
        self._counts: dict[float, _RatioCounts] = {}
        self.num_train: int | None = None
        self.per_example = per_example

    @property
    def subset_ratios(self) -> tuple[float, ...]:
        return tuple(sorted(self._declared | set(self._counts)))

    def add(self, subset_ratio: float, aux: AuxArrays) -> None:
        if self.num_train is None:
            self.num_train = aux.num_train
        elif aux.num_train != self.num_train:
            raise InconsistentRunError(
                f"{aux.source}: has N={aux.num_train} training examples; earlier runs have "
                f"N={self.num_train}"
            )
        key = ratio_key(subset_ratio)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = _RatioCounts.zeros(self.num_train)
        counts.num_runs += 1
        if not self.per_example:
            return
        mask, correct = aux.train_mask(), aux.train_correctness()
        heldout = ~mask
        counts.heldout_count += heldout
        counts.heldout_correct += correct & heldout
        counts.trained_correct += correct & mask

    def merge(self, other: ScoreAccumulator) -> ScoreAccumulator:
        """Adds the runs `other` counted to this one's (for partial counts of shares of
        runs, read by several workers); integer sums, so the order never matters.

        Raises:
          InconsistentRunError: the two counted runs of different training-set sizes.
        """
        if other.per_example != self.per_example:
            raise ScoresError(
                "partial counts with and without per-example sums cannot be added "
                "(count them with the same scores requested)"
            )
        if other.num_train is not None:
            if self.num_train is None:
                self.num_train = other.num_train
            elif other.num_train != self.num_train:
                raise InconsistentRunError(
                    f"partial counts of N={other.num_train} and N={self.num_train} "
                    "training examples cannot be added"
                )
        self._declared |= other._declared
        for key, theirs in other._counts.items():
            mine = self._counts.get(key)
            if mine is None:
                mine = self._counts[key] = _RatioCounts.zeros(self.num_train)
            mine.num_runs += theirs.num_runs
            mine.heldout_count += theirs.heldout_count
            mine.heldout_correct += theirs.heldout_correct
            mine.trained_correct += theirs.trained_correct
        return self

    def _counts_at(self, subset_ratio: float) -> _RatioCounts:
        if self.num_train is None:
            raise ScoresError("no runs were added")
        key = ratio_key(subset_ratio)
        if key not in self._counts and key not in self._declared:
            raise ScoresError(
                f"no runs at subset ratio {subset_ratio}; ratios present: "
                f"{list(self.subset_ratios)}"
            )
        return self._counts.get(key) or _RatioCounts.zeros(self.num_train)

    def cscores(self) -> CScores:
        if self.num_train is None:
            raise ScoresError("no runs were added")
        ratios = self.subset_ratios
        per_ratio = [self._counts_at(ratio) for ratio in ratios]
        heldout_count = np.stack([counts.heldout_count for counts in per_ratio])
        heldout_correct = np.stack([counts.heldout_correct for counts in per_ratio])
        by_ratio, stderr = _mean_and_stderr(heldout_correct, heldout_count)
        defined = ~np.isnan(by_ratio)
        ratio_count = defined.sum(axis=0).astype(np.int32)
        with np.errstate(divide="ignore", invalid="ignore"):
            cscore = np.where(defined, by_ratio, 0.0).sum(axis=0) / ratio_count
        return CScores(
            subset_ratios=np.asarray(ratios, dtype=np.float64),
            num_runs_by_ratio=np.asarray([c.num_runs for c in per_ratio], dtype=np.int64),
            cscore=cscore,
            ratio_count=ratio_count,
            cscore_by_ratio=by_ratio,
            heldout_count_by_ratio=heldout_count,
            cscore_stderr_by_ratio=stderr,
        )

    def memorization(self, subset_ratio: float) -> Memorization:
        counts = self._counts_at(subset_ratio)
        count_in = (counts.num_runs - counts.heldout_count).astype(np.int32)
        p_in, stderr_in = _mean_and_stderr(counts.trained_correct, count_in)
        p_out, stderr_out = _mean_and_stderr(counts.heldout_correct, counts.heldout_count)
        return Memorization(
            subset_ratio=float(subset_ratio),
            num_runs=counts.num_runs,
            memorization=p_in - p_out,
            count_in=count_in,
            count_out=counts.heldout_count.copy(),
            p_correct_in=p_in,
            p_correct_out=p_out,
            stderr=np.sqrt(stderr_in**2 + stderr_out**2),
        )


def compute_cscores(runs: Iterable[tuple[float, AuxArrays]]) -> CScores:
    """C-scores from `(subset_ratio, aux)` pairs, streamed.

    Raises:
      ScoresError: no runs.
      InconsistentRunError: runs of different training-set sizes.
    """
    accumulator = ScoreAccumulator()
    for subset_ratio, aux in runs:
        accumulator.add(subset_ratio, aux)
    return accumulator.cscores()


def compute_memorization(
    runs: Iterable[AuxArrays], subset_ratio: float | None = None
) -> Memorization:
    """Memorization from runs of one subset ratio, streamed.

    Args:
      runs: the runs' aux arrays, all of one subset ratio.
      subset_ratio: only recorded in the result.

    Returns:
      The `Memorization` of every training example (NaN where a count is 0).

    Raises:
      ScoresError: no runs.
      InconsistentRunError: runs of different training-set sizes.
    """
    accumulator = ScoreAccumulator()
    label = 0.0 if subset_ratio is None else subset_ratio
    for aux in runs:
        accumulator.add(label, aux)
    result = accumulator.memorization(label)
    return dataclasses.replace(result, subset_ratio=subset_ratio)
