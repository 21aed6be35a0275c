"""How reliable each score's ranking is now: split-half rank reliability.

Spearman between the scores of two random halves of the runs, measured over repeats;
the counts it keeps are what `budget` fits to predict larger budgets. Spearman-Brown's
step-up is kept for reference. Method: docs/methods.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from heldout._core.ranks import spearman
from heldout.errors import ScoresError, UsageError
from heldout.release.aux_arrays import AuxArrays

__all__ = ["RELIABILITY_SCORES", "SplitHalfAccumulator", "spearman_brown"]

RELIABILITY_SCORES = ("cscore", "memorization")


def spearman_brown(rho: float, multiplier: float) -> float:
    """The classical step-up: reliability of m times as much data."""
    return multiplier * rho / (1.0 + (multiplier - 1.0) * rho)


def cscore_from_counts(correct: np.ndarray, count: np.ndarray) -> np.ndarray:
    """[S, N] counts -> integral C-score (mean of the defined per-ratio C-scores)."""
    defined = count > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        per_ratio = np.where(defined, correct / np.where(defined, count, 1), 0.0)
        return per_ratio.sum(axis=0) / defined.sum(axis=0)


def memorization_from_counts(correct_in, count_in, correct_out, count_out) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return correct_in / count_in - correct_out / count_out


class SplitHalfAccumulator:
    """Counts, run by run, the totals and one half of every random split of the runs.

    Args:
      runs_by_ratio: per subset ratio, the keys (e.g. paths) of the runs that will be
        added; each repeat splits every ratio's list at random into halves of
        floor(R / 2) and ceil(R / 2) runs.
      repeats: random splits.
      memorization_ratio: the ratio whose trained-on counts memorization needs (None:
        memorization not wanted).
      seed: fixes the splits.
    """

    def __init__(
        self,
        runs_by_ratio: dict[float, Sequence],
        repeats: int = 10,
        memorization_ratio: float | None = None,
        seed: int = 0,
    ):
        if repeats < 1:
            raise UsageError(f"repeats must be at least 1, got {repeats}")
        self.subset_ratios = tuple(sorted(runs_by_ratio))
        self.repeats = repeats
        self.memorization_ratio = memorization_ratio
        rng = np.random.default_rng([seed, 11])
        self._half_of: dict[object, tuple[int, np.ndarray]] = {}
        for s, ratio in enumerate(self.subset_ratios):
            keys = list(runs_by_ratio[ratio])
            in_first = np.zeros((len(keys), repeats), dtype=bool)
            for q in range(repeats):
                in_first[rng.permutation(len(keys))[: len(keys) // 2], q] = True
            for key, row in zip(keys, in_first, strict=True):
                self._half_of[key] = (s, np.flatnonzero(row))
        self.num_train: int | None = None
        self.num_runs = np.zeros(len(self.subset_ratios), np.int64)
        self.half_runs = np.zeros((repeats, len(self.subset_ratios)), np.int64)

    def _allocate(self, num_train: int) -> None:
        shape = (len(self.subset_ratios), num_train)
        self.num_train = num_train
        self.heldout_count = np.zeros(shape, np.int32)
        self.heldout_correct = np.zeros(shape, np.int32)
        self.half_heldout_count = np.zeros((self.repeats, *shape), np.int32)
        self.half_heldout_correct = np.zeros((self.repeats, *shape), np.int32)
        if self.memorization_ratio is not None:
            self.trained_correct = np.zeros(num_train, np.int32)
            self.half_trained_correct = np.zeros((self.repeats, num_train), np.int32)

    def add(self, key, aux: AuxArrays) -> None:
        """Adds the run registered as `key`."""
        if key not in self._half_of:
            raise ScoresError(f"{aux.source}: not one of the runs the halves were drawn for")
        if self.num_train is None:
            self._allocate(aux.num_train)
        elif aux.num_train != self.num_train:
            raise ScoresError(
                f"{aux.source}: has N={aux.num_train}; earlier runs have N={self.num_train}"
            )
        s, repeats_in_first = self._half_of[key]
        mask, correct = aux.train_mask(), aux.train_correctness()
        heldout = ~mask
        heldout_correct = correct & heldout
        self.num_runs[s] += 1
        self.heldout_count[s] += heldout
        self.heldout_correct[s] += heldout_correct
        for q in repeats_in_first:
            self.half_runs[q, s] += 1
            self.half_heldout_count[q, s] += heldout
            self.half_heldout_correct[q, s] += heldout_correct
        memorization_row = self._memorization_row()
        if memorization_row == s:
            trained_correct = correct & mask
            self.trained_correct += trained_correct
            for q in repeats_in_first:
                self.half_trained_correct[q] += trained_correct

    def _memorization_row(self) -> int | None:
        if self.memorization_ratio is None:
            return None
        for s, ratio in enumerate(self.subset_ratios):
            if round(ratio, 9) == round(self.memorization_ratio, 9):
                return s
        raise ScoresError(
            f"no runs at subset ratio {self.memorization_ratio}; ratios: {self.subset_ratios}"
        )

    # -- the measured split-half reliability ----------------------------------------

    def _halves(self, score: str, q: int) -> tuple[np.ndarray, np.ndarray]:
        count_a, correct_a = self.half_heldout_count[q], self.half_heldout_correct[q]
        count_b = self.heldout_count - count_a
        correct_b = self.heldout_correct - correct_a
        if score == "cscore":
            return (
                cscore_from_counts(correct_a, count_a),
                cscore_from_counts(correct_b, count_b),
            )
        s = self._memorization_row()
        runs_a = self.half_runs[q, s]
        runs_b = self.num_runs[s] - runs_a
        trained_a = self.half_trained_correct[q]
        trained_b = self.trained_correct - trained_a
        return (
            memorization_from_counts(trained_a, runs_a - count_a[s], correct_a[s], count_a[s]),
            memorization_from_counts(trained_b, runs_b - count_b[s], correct_b[s], count_b[s]),
        )

    def measured(self, score: str) -> tuple[np.ndarray, np.ndarray]:
        """Per repeat: (Spearman rho between the halves, examples it covers)."""
        if self.num_train is None:
            raise ScoresError("no runs were added")
        results = [spearman(*self._halves(score, q)) for q in range(self.repeats)]
        return np.array([r for r, _ in results]), np.array([n for _, n in results])

    # -- what the prediction is fitted to ---------------------------------------------

    def counts_for(self, score: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(successes [N, D], counts [N, D], runs [D]) of all runs, D proportions a score
        uses: the ratios' held-out results (cscore), or trained-on and held-out results
        at the memorization ratio (memorization)."""
        if score == "cscore":
            return self.heldout_correct.T, self.heldout_count.T, self.num_runs.copy()
        s = self._memorization_row()
        runs = self.num_runs[s]
        count_out = self.heldout_count[s]
        return (
            np.stack([self.trained_correct, self.heldout_correct[s]], axis=1),
            np.stack([runs - count_out, count_out], axis=1),
            np.array([runs, runs]),
        )
