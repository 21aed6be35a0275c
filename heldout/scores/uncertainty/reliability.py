"""How reliable each score's ranking is, and the run budget a target reliability needs.

Split-half rank reliability (Spearman between scores of two random halves of the runs),
measured over repeats, and predicted for m times the runs by simulating from the
deconvolved population of true probabilities (`deconvolution`); Spearman-Brown is
reported beside it for reference. Method: docs/methods.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from heldout._core.ranks import spearman
from heldout.errors import ScoresError, UsageError
from heldout.release.aux_arrays import AuxArrays
from heldout.scores.uncertainty.deconvolution import Prior, fit_prior

__all__ = [
    "RELIABILITY_SCORES",
    "RunBudget",
    "SplitHalfAccumulator",
    "predict_run_budget",
    "spearman_brown",
]

RELIABILITY_SCORES = ("cscore", "memorization")
CURVE_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
TABLE_MULTIPLIERS = (2.0, 4.0, 8.0)
_MAX_MULTIPLIER = 1024.0


def spearman_brown(rho: float, multiplier: float) -> float:
    """The classical step-up: reliability of m times as much data."""
    return multiplier * rho / (1.0 + (multiplier - 1.0) * rho)


def _cscore_from_counts(correct: np.ndarray, count: np.ndarray) -> np.ndarray:
    """[S, N] counts -> integral C-score (mean of the defined per-ratio C-scores)."""
    defined = count > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        per_ratio = np.where(defined, correct / np.where(defined, count, 1), 0.0)
        return per_ratio.sum(axis=0) / defined.sum(axis=0)


def _memorization_from_counts(correct_in, count_in, correct_out, count_out) -> np.ndarray:
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
                _cscore_from_counts(correct_a, count_a),
                _cscore_from_counts(correct_b, count_b),
            )
        s = self._memorization_row()
        runs_a = self.half_runs[q, s]
        runs_b = self.num_runs[s] - runs_a
        trained_a = self.half_trained_correct[q]
        trained_b = self.trained_correct - trained_a
        return (
            _memorization_from_counts(trained_a, runs_a - count_a[s], correct_a[s], count_a[s]),
            _memorization_from_counts(trained_b, runs_b - count_b[s], correct_b[s], count_b[s]),
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


# ---------------------------------------------------------------------------------------
# Prediction by simulation from the deconvolved population.


class _Simulator:
    """Split-half reliability of a score simulated at any run budget, from a prior.

    The same simulated examples (truths drawn once per replicate) serve every budget,
    so the predicted curve is smooth in the budget and bisection on it is stable.
    """

    def __init__(
        self,
        score: str,
        prior: Prior,
        heldout_fraction: np.ndarray,
        num_examples: int,
        replicates: int,
        seed: int,
    ):
        self.score = score
        self.heldout_fraction = heldout_fraction
        rng = np.random.default_rng([seed, 12])
        self.truths = [prior.sample(num_examples, rng) for _ in range(replicates)]
        self.seed = seed

    def rho(self, half_runs: np.ndarray) -> float:
        """Mean simulated split-half rho with `half_runs` [ratios] runs in each half."""
        values = []
        for r, truth in enumerate(self.truths):
            rng = np.random.default_rng([self.seed, 13, r])
            halves = [self._score_of_half(truth, half_runs, rng) for _ in range(2)]
            values.append(spearman(*halves)[0])
        values = [v for v in values if np.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")

    def _score_of_half(self, truth, half_runs, rng) -> np.ndarray:
        if self.score == "cscore":
            count = rng.binomial(half_runs[None, :], self.heldout_fraction[None, :], truth.shape)
            correct = rng.binomial(count, truth)
            return _cscore_from_counts(correct.T, count.T)
        runs = int(half_runs[0])
        count_out = rng.binomial(runs, self.heldout_fraction[0], truth.shape[0])
        count_in = runs - count_out
        correct_in = rng.binomial(count_in, truth[:, 0])
        correct_out = rng.binomial(count_out, truth[:, 1])
        return _memorization_from_counts(correct_in, count_in, correct_out, count_out)


@dataclasses.dataclass(frozen=True)
class RunBudget:
    """Measured and predicted split-half reliability of one score's ranking.

    Attributes:
      score: "cscore" (integral over the ratios) or "memorization".
      subset_ratios: the ratios the score uses.
      runs_per_ratio: the runs read at each of them.
      repeats: random splits behind `measured_rho`.
      num_examples: examples defined in both halves (mean over repeats).
      measured_rho, measured_rho_sd: mean and standard deviation over the repeats.
      predicted_rho: multiplier m -> predicted split-half rho with m times the runs per
        ratio (m = 1 is the prediction for the current runs: a check of the method).
      spearman_brown_rho: the same multipliers by the Spearman-Brown formula (reference).
      target_rho: the reliability asked for.
      multiplier_for_target: the smallest m reaching it (None: not within 1024 x, or the
        prediction is undefined).
      runs_for_target: runs per ratio at that m.
    """

    score: str
    subset_ratios: tuple[float, ...]
    runs_per_ratio: tuple[int, ...]
    repeats: int
    num_examples: int
    measured_rho: float
    measured_rho_sd: float
    predicted_rho: dict[float, float]
    spearman_brown_rho: dict[float, float]
    target_rho: float
    multiplier_for_target: float | None
    runs_for_target: tuple[int, ...] | None

    def to_json(self) -> dict:
        """A JSON-ready dict (multipliers as strings, e.g. "2"; undefined values null)."""
        return _finite_or_none(
            {
                "score": self.score,
                "subset_ratios": list(self.subset_ratios),
                "runs_per_ratio": list(self.runs_per_ratio),
                "repeats": self.repeats,
                "num_examples": self.num_examples,
                "measured_rho": self.measured_rho,
                "measured_rho_sd": self.measured_rho_sd,
                "predicted_rho": {f"{m:g}": rho for m, rho in self.predicted_rho.items()},
                "spearman_brown_rho": {f"{m:g}": r for m, r in self.spearman_brown_rho.items()},
                "target_rho": self.target_rho,
                "multiplier_for_target": self.multiplier_for_target,
                "runs_for_target": None
                if self.runs_for_target is None
                else list(self.runs_for_target),
            }
        )


def _finite_or_none(value):
    """NaN (e.g. memorization at one run per half: nothing defined) as None, recursively."""
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _half_budget(runs: np.ndarray, multiplier: float) -> np.ndarray:
    return np.maximum(1, np.floor(multiplier * runs / 2.0)).astype(np.int64)


def predict_run_budget(
    halves: SplitHalfAccumulator,
    score: str,
    target_rho: float = 0.9,
    multipliers: Sequence[float] = CURVE_MULTIPLIERS,
    seed: int = 0,
    replicates: int = 3,
    max_examples: int = 20_000,
) -> RunBudget:
    """Measures and predicts the split-half reliability of `score` (see the module docs).

    Args:
      halves: the accumulated runs.
      score: one of `RELIABILITY_SCORES`.
      target_rho: the reliability whose run budget to find.
      multipliers: the budgets (times the current runs per ratio) to predict.
      seed: fixes the fit and the simulation.
      replicates: simulated replicates averaged per prediction.
      max_examples: examples simulated (a random sample beyond this; Spearman's rho does
        not depend on the number of examples, only its noise does).
    """
    if score not in RELIABILITY_SCORES:
        raise UsageError(f"unknown score {score!r}; choose from {list(RELIABILITY_SCORES)}")
    if not 0.0 < target_rho < 1.0:
        raise UsageError(f"the target reliability must be between 0 and 1, got {target_rho}")
    rho, covered = halves.measured(score)
    successes, counts, runs = halves.counts_for(score)
    if score == "cscore":
        ratios = halves.subset_ratios
        per_ratio_runs = runs
    else:
        ratios = (halves.memorization_ratio,)
        per_ratio_runs = runs[:1]
    rng = np.random.default_rng([seed, 14])
    informative = counts.sum(axis=1) > 0
    successes, counts = successes[informative], counts[informative]
    if successes.shape[0] == 0:
        raise ScoresError(f"no example has any run behind its {score}")
    prior = fit_prior(successes, counts, rng)
    if score == "cscore":
        heldout_fraction = counts.sum(axis=0) / (np.maximum(runs, 1) * counts.shape[0])
    else:
        heldout_fraction = np.array([counts[:, 1].sum() / (max(runs[0], 1) * counts.shape[0])])
    simulator = _Simulator(
        score,
        prior,
        heldout_fraction,
        min(successes.shape[0], max_examples),
        replicates,
        seed,
    )
    predicted = {float(m): simulator.rho(_half_budget(per_ratio_runs, m)) for m in multipliers}
    measured = float(np.nanmean(rho))
    brown = {
        float(m): spearman_brown(measured, m) if np.isfinite(measured) else float("nan")
        for m in multipliers
    }
    multiplier = _multiplier_for(simulator, per_ratio_runs, target_rho)
    return RunBudget(
        score=score,
        subset_ratios=tuple(float(r) for r in ratios),
        runs_per_ratio=tuple(int(r) for r in per_ratio_runs),
        repeats=halves.repeats,
        num_examples=int(round(float(np.mean(covered)))),
        measured_rho=measured,
        measured_rho_sd=float(np.nanstd(rho)) if rho.size > 1 else 0.0,
        predicted_rho=predicted,
        spearman_brown_rho=brown,
        target_rho=float(target_rho),
        multiplier_for_target=multiplier,
        runs_for_target=None
        if multiplier is None
        else tuple(int(math.ceil(multiplier * r)) for r in per_ratio_runs),
    )


def _multiplier_for(simulator: _Simulator, runs: np.ndarray, target: float) -> float | None:
    """The smallest m (in steps of one run of the largest ratio) whose rho >= target."""
    largest = int(runs.max())

    cache: dict[int, float] = {}

    def rho_at(total: int) -> float:
        if total not in cache:
            cache[total] = simulator.rho(_half_budget(runs, total / largest))
        return cache[total]

    low, high = None, 2  # halves of one run at least
    while not rho_at(high) >= target:  # NaN (no example defined yet) is below
        low, high = high, high * 2
        if high > _MAX_MULTIPLIER * largest:
            return None
    if low is None:
        return high / largest
    while high - low > 1:  # rho_at(low) < target <= rho_at(high)
        middle = (low + high) // 2
        if rho_at(middle) >= target:  # NaN is below
            high = middle
        else:
            low = middle
    return high / largest
