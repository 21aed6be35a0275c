"""The run budget a target reliability needs, predicted by simulation.

Split-half reliability at m times the runs is simulated from the deconvolved population of
true probabilities (`deconvolution`), the same simulated examples at every budget. Beside
the curve: its ceiling as runs grow without bound, the examples whose true values are tied
(the cause of any ceiling), any fall of the curve, and the smallest budget that stays at
the target from there on. Method: docs/methods.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from heldout._core.ranks import spearman
from heldout.errors import ScoresError, UsageError
from heldout.scores.uncertainty.deconvolution import Prior, fit_prior
from heldout.scores.uncertainty.reliability import (
    RELIABILITY_SCORES,
    SplitHalfAccumulator,
    cscore_from_counts,
    memorization_from_counts,
    spearman_brown,
)

__all__ = ["CURVE_MULTIPLIERS", "MAX_MULTIPLIER", "RunBudget", "predict_run_budget"]

CURVE_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
MAX_MULTIPLIER = 1024.0
# A fall of the predicted curve by less than this is the simulation's own noise (a few
# replicates of up to 20 000 examples); a larger one is reported with its cause.
FALL_TOLERANCE = 0.005
TARGET_RULE = (
    "the smallest budget whose predicted rho stays at or above the target at every larger "
    f"budget checked (doubling up to {MAX_MULTIPLIER:g}x) and as runs grow without bound"
)


class _Simulator:
    """Split-half reliability of a score simulated at any run budget, from a prior.

    The same simulated examples (truths drawn once per replicate) serve every budget, so
    the predicted curve is smooth in the budget.
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
            return cscore_from_counts(correct.T, count.T)
        runs = int(half_runs[0])
        count_out = rng.binomial(runs, self.heldout_fraction[0], truth.shape[0])
        count_in = runs - count_out
        correct_in = rng.binomial(count_in, truth[:, 0])
        correct_out = rng.binomial(count_out, truth[:, 1])
        return memorization_from_counts(correct_in, count_in, correct_out, count_out)

    def _true_scores(self, truth: np.ndarray) -> np.ndarray:
        if self.score == "cscore":
            return truth.mean(axis=1)
        return truth[:, 0] - truth[:, 1]

    def ceiling(self) -> tuple[float, dict[float, float], float]:
        """The limit of rho as runs grow without bound, and the tied true values behind it.

        In the limit every estimate is its true value, except that examples sharing a true
        value keep an order: none where every proportion is exactly 0 or 1 (the estimate is
        then exact: tied in both halves, ranks averaged, agreeing), and a random one in
        each half otherwise (estimates close in on the value from either side).

        Returns:
          (rho at the limit, {tied value: share of examples} for the exact ties, share of
          examples in ties at other values, whose order is noise at every budget).
        """
        values, exact_shares, noise_shares = [], [], []
        for r, truth in enumerate(self.truths):
            rng = np.random.default_rng([self.seed, 15, r])
            true = self._true_scores(truth)
            exact = np.all((truth == 0.0) | (truth == 1.0), axis=1)
            distinct, inverse, sizes = np.unique(true, return_inverse=True, return_counts=True)
            tied = sizes[inverse.reshape(-1)] > 1
            gap = float(np.diff(distinct).min()) if distinct.size > 1 else 1.0
            halves = [
                true + np.where(exact, 0.0, rng.uniform(0.0, 0.5 * gap, true.size))
                for _ in range(2)
            ]
            values.append(spearman(*halves)[0])
            exact_values, exact_counts = np.unique(true[exact & tied], return_counts=True)
            exact_shares.append(
                {
                    float(v): float(c / true.size)
                    for v, c in zip(exact_values, exact_counts, strict=True)
                }
            )
            noise_shares.append(float(np.mean(tied & ~exact)))
        shares: dict[float, float] = {}
        for found in exact_shares:
            for value, share in found.items():
                shares[value] = shares.get(value, 0.0) + share / len(exact_shares)
        finite = [v for v in values if np.isfinite(v)]
        rho = float(np.mean(finite)) if finite else float("nan")
        return rho, dict(sorted(shares.items())), float(np.mean(noise_shares))


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
      multiplier_for_target: the budget `TARGET_RULE` picks, as a multiple of the current
        runs (None: not reachable within `MAX_MULTIPLIER`, or above the ceiling).
      runs_for_target: runs per ratio at that m.
      ceiling_rho: predicted rho as runs grow without bound.
      tied_true_values: true value -> share of examples sitting exactly there with every
        proportion at 0 or 1: estimates tied at every budget, their ranks averaged.
      noise_tied_share: share of examples tied in truth elsewhere: their order is noise
        at every budget, and the reason the ceiling is below 1.
      checked_rho: runs per ratio (at the largest ratio) -> predicted rho, every budget
        the target search evaluated.
      falls: (runs, rho, larger runs, lower rho) wherever the predicted curve falls by
        more than the simulation's noise, from the current runs on.
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
    ceiling_rho: float = float("nan")
    tied_true_values: dict[float, float] = dataclasses.field(default_factory=dict)
    noise_tied_share: float = 0.0
    checked_rho: dict[int, float] = dataclasses.field(default_factory=dict)
    falls: tuple[tuple[int, float, int, float], ...] = ()

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
                "target_rule": TARGET_RULE,
                "multiplier_for_target": self.multiplier_for_target,
                "runs_for_target": None
                if self.runs_for_target is None
                else list(self.runs_for_target),
                "ceiling_rho": self.ceiling_rho,
                "tied_true_values": {f"{v:g}": s for v, s in self.tied_true_values.items()},
                "noise_tied_share": self.noise_tied_share,
                "checked_rho": {str(runs): rho for runs, rho in self.checked_rho.items()},
                "falls": [list(fall) for fall in self.falls],
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

    Returns:
      A `RunBudget`.

    Raises:
      UsageError: an unknown score, or a target outside (0, 1).
      ScoresError: no example has a run behind the score.
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
        score, prior, heldout_fraction, min(successes.shape[0], max_examples), replicates, seed
    )
    largest = int(per_ratio_runs.max())
    checked: dict[int, float] = {}

    def rho_at(total: int) -> float:
        if total not in checked:
            checked[total] = simulator.rho(_half_budget(per_ratio_runs, total / largest))
        return checked[total]

    predicted = {float(m): rho_at(max(1, int(round(m * largest)))) for m in multipliers}
    measured = float(np.nanmean(rho))
    brown = {
        float(m): spearman_brown(measured, m) if np.isfinite(measured) else float("nan")
        for m in multipliers
    }
    ceiling, tied, noise_share = simulator.ceiling()
    total = _runs_for(rho_at, checked, largest, target_rho, ceiling)
    multiplier = None if total is None else total / largest
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
        ceiling_rho=ceiling,
        tied_true_values=tied,
        noise_tied_share=noise_share,
        checked_rho=dict(sorted(checked.items())),
        falls=_falls({runs: rho for runs, rho in checked.items() if runs >= largest}),
    )


def _falls(checked: dict[int, float]) -> tuple[tuple[int, float, int, float], ...]:
    """Each budget whose predicted rho exceeds a larger budget's by more than the noise."""
    found = []
    budgets = [runs for runs in sorted(checked) if np.isfinite(checked[runs])]
    for i, runs in enumerate(budgets[:-1]):
        later = budgets[i + 1 :]
        lowest = min(later, key=lambda other: checked[other])
        if checked[runs] - checked[lowest] > FALL_TOLERANCE:
            found.append((runs, checked[runs], lowest, checked[lowest]))
    # One line per fall: the first budget of each falling stretch.
    return tuple(fall for i, fall in enumerate(found) if i == 0 or found[i - 1][2] != fall[2])


def _runs_for(
    rho_at, checked: dict[int, float], largest: int, target: float, ceiling: float
) -> int | None:
    """Runs per ratio (at the largest ratio) that `TARGET_RULE` picks, or None.

    The curve is evaluated on a doubling ladder of budgets; the answer lies between the
    last ladder budget below the target and the first one from which every later one (and
    the ceiling) is at or above it, found by bisection there. Every budget the bisection
    evaluated above its answer is at or above the target, so the rule holds on every
    budget checked, even where the curve is not monotone.
    """
    if not ceiling >= target:  # NaN is below
        return None
    ladder = [2]  # halves of one run at least
    while ladder[-1] * 2 <= MAX_MULTIPLIER * largest:
        ladder.append(ladder[-1] * 2)
    reaches = [rho_at(total) >= target for total in ladder]  # NaN is below
    if not reaches[-1]:
        return None
    first = len(ladder) - 1
    while first > 0 and reaches[first - 1]:
        first -= 1
    if first > 0:
        low, high = ladder[first - 1], ladder[first]
        while high - low > 1:  # rho_at(low) < target <= rho_at(high)
            middle = (low + high) // 2
            if rho_at(middle) >= target:
                high = middle
            else:
                low = middle
    # The rule over every budget evaluated (the curve's multipliers included).
    answer = None
    for total in sorted(checked, reverse=True):
        if not rho_at(total) >= target:
            break
        answer = total
    return answer
