"""Membership inference over the runs of one ratio: one pass over the runs, then the three
attacks against each target run, their evaluation, and the per-example `privacy_risk`.

Memory: the per-example sums (a few float64 [n]), the targets' masks and statistics, and
the scores [targets, n] of each attack; one run's arrays at a time besides.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from heldout._core.ranks import spearman
from heldout.errors import UsageError
from heldout.scores.counts import ScoreAccumulator
from heldout.scores.privacy.attacks import MARGIN, lira_offline, lira_online, loss_threshold
from heldout.scores.privacy.reading import RunStatistic
from heldout.scores.privacy.roc import (
    BOOTSTRAP_SAMPLES,
    AttackEvaluation,
    evaluate_attack,
    per_example_auc,
)
from heldout.scores.privacy.shadows import ShadowSums

__all__ = [
    "ATTACKS",
    "NON_TARGETS",
    "OTHERS",
    "SHADOWS",
    "AttackScores",
    "PrivacyResult",
    "compute_attack_scores",
    "compute_privacy",
    "rank_correlation",
]

ATTACKS = ("lira_online", "lira_offline", "loss_threshold")
OTHERS = "others"  # every run of the ratio but the target: the threat model
NON_TARGETS = "non_targets"  # every run that is no target: one shadow set for all targets
SHADOWS = (OTHERS, NON_TARGETS)


@dataclasses.dataclass(frozen=True)
class AttackScores:
    """Every attack's score of every training example against every target run.

    Attributes:
      target_run_ids: int64 [targets].
      scores: attack name (`ATTACKS`) -> float64 [targets, n], members high, NaN where the
        shadows are too few.
      member: bool [targets, n].
      num_runs: runs of the ratio read (each target's shadows are the others).
      num_undefined: attack name -> (target, example) pairs left NaN.
      accumulator: counts of the same runs for memorization and C-scores (None if no aux).
      shadows: `OTHERS` or `NON_TARGETS`, which runs were each target's shadows.
      num_shadows: the shadow runs of each target.
    """

    target_run_ids: np.ndarray
    scores: dict[str, np.ndarray]
    member: np.ndarray
    num_runs: int
    num_undefined: dict[str, int]
    accumulator: ScoreAccumulator | None = None
    shadows: str = OTHERS
    num_shadows: int = 0


def compute_attack_scores(
    runs: Iterable[RunStatistic],
    target_run_ids: Sequence[int],
    statistic: str = MARGIN,
    min_shadows: int = 4,
    fix_variance: bool = False,
    shadows: str = OTHERS,
) -> AttackScores:
    """The attacks against each target, its shadows every other run, in one pass over runs.

    Args:
      runs: each run of one ratio once (targets among them), e.g. `iter_run_statistics`.
      target_run_ids: the targets.
      statistic: `MARGIN` or `CORRECTNESS`, what the runs' statistic is.
      min_shadows: fewer IN or OUT shadow runs than this leave an example NaN.
      fix_variance: LiRA with one global std per side instead of per example.
      shadows: `OTHERS` (every run but the target, left out exactly) or `NON_TARGETS`
        (every run that is no target: the same shadows for every target).

    Returns:
      The `AttackScores`.

    Raises:
      UsageError: a target not among the runs, fewer shadow runs than 2 x `min_shadows`,
        or an unknown `shadows`.
    """
    if shadows not in SHADOWS:
        raise UsageError(f"unknown shadows {shadows!r}; use one of {list(SHADOWS)}")
    wanted = {int(i) for i in target_run_ids}
    kept: dict[int, RunStatistic] = {}
    sums: ShadowSums | None = None
    accumulator = ScoreAccumulator()
    for run in runs:
        if sums is None:
            sums = ShadowSums(run.mask.size)
        sums.add(run.mask, run.statistic)
        if run.aux is not None:
            accumulator.add(0.0, run.aux)
        if run.run_id in wanted:
            kept[run.run_id] = RunStatistic(run.run_id, run.mask, run.statistic, None)
    num_runs = 0 if sums is None else sums.num_runs
    missing = sorted(wanted - set(kept))
    if missing:
        raise UsageError(f"target runs {missing[:10]} are not among the {num_runs} runs read")
    num_shadows = num_runs - len(wanted) if shadows == NON_TARGETS else num_runs
    if num_shadows < 2 * min_shadows:
        raise UsageError(
            f"{num_shadows} shadow runs cannot give {min_shadows} IN and {min_shadows} OUT "
            f"shadows (--min_shadows={min_shadows} needs at least {2 * min_shadows} runs)"
        )
    ids = sorted(wanted)
    shared = None
    if shadows == NON_TARGETS:
        for run_id in ids:
            sums.remove(kept[run_id].mask, kept[run_id].statistic)
        shared = sums.fits()
    scores = {name: np.empty((len(ids), sums.num_train)) for name in ATTACKS}
    member = np.empty((len(ids), sums.num_train), dtype=bool)
    for row, run_id in enumerate(ids):
        target = kept.pop(run_id)
        fits = shared if shared is not None else sums.fits_without(target.mask, target.statistic)
        scores["lira_online"][row] = lira_online(target.statistic, fits, min_shadows, fix_variance)
        scores["lira_offline"][row] = lira_offline(
            target.statistic, fits, min_shadows, fix_variance
        )
        scores["loss_threshold"][row] = loss_threshold(target.statistic, statistic)
        member[row] = target.mask
    undefined = {name: int(np.isnan(values).sum()) for name, values in scores.items()}
    counted = accumulator if accumulator.num_train is not None else None
    return AttackScores(
        np.asarray(ids, np.int64),
        scores,
        member,
        num_runs,
        undefined,
        counted,
        shadows,
        num_shadows - 1 if shadows == OTHERS else num_shadows,
    )


@dataclasses.dataclass(frozen=True)
class Correlation:
    """Spearman's rho (average ranks) with its 95 % interval and the examples behind it."""

    rho: float
    ci_low: float
    ci_high: float
    count: int


def rank_correlation(a: np.ndarray, b: np.ndarray) -> Correlation:
    """Spearman's rho over the examples defined in both (ties share their average rank),
    with the Fisher-z interval of a rank correlation (standard error 1.06 / sqrt(n - 3))."""
    rho, count = spearman(a, b)
    if math.isnan(rho) or count < 4 or abs(rho) >= 1.0:
        return Correlation(rho, math.nan, math.nan, count)
    z, half = math.atanh(rho), 1.96 * 1.06 / math.sqrt(count - 3)
    return Correlation(rho, math.tanh(z - half), math.tanh(z + half), count)


@dataclasses.dataclass(frozen=True)
class PrivacyResult:
    """The attacks, their evaluation pooled over targets, and the per-example risk.

    Attributes:
      attacks: the `AttackScores`.
      evaluations: attack name -> `AttackEvaluation`, every attack over the same (target,
        example) pairs: those where online LiRA is defined.
      privacy_risk: float64 [n], the per-example AUC of online LiRA over the targets
        (`roc.per_example_auc`); NaN without a member and a non-member target.
      risk_count_in, risk_count_out: int64 [n], the targets behind it.
      correlations: "memorization" / "cscore" -> `Correlation` with `privacy_risk`,
        both estimated from all runs of the ratio (absent when the runs had no aux arrays).
      statistic, min_shadows, fix_variance: how it was computed.
    """

    attacks: AttackScores
    evaluations: dict[str, AttackEvaluation]
    privacy_risk: np.ndarray
    risk_count_in: np.ndarray
    risk_count_out: np.ndarray
    correlations: dict[str, Correlation]
    statistic: str
    min_shadows: int
    fix_variance: bool


def compute_privacy(
    runs: Iterable[RunStatistic],
    target_run_ids: Sequence[int],
    statistic: str = MARGIN,
    min_shadows: int = 4,
    fix_variance: bool = False,
    seed: int = 0,
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
    progress: Callable[[str], None] | None = None,
    shadows: str = OTHERS,
) -> PrivacyResult:
    """Everything `heldout privacy` reports, from the runs of one ratio.

    Args:
      runs, target_run_ids, statistic, min_shadows, fix_variance, shadows: as
        `compute_attack_scores`.
      seed: of the bootstrap over targets.
      bootstrap_samples: resamples of the target runs per attack.
      progress: called with a line before each long step (None: silent).

    Returns:
      The `PrivacyResult`.

    Raises:
      UsageError: as `compute_attack_scores`.
    """
    attacks = compute_attack_scores(
        runs, target_run_ids, statistic, min_shadows, fix_variance, shadows
    )
    common = ~np.isnan(attacks.scores["lira_online"])
    evaluations = {}
    for name in ATTACKS:
        if progress is not None:
            progress(f"evaluating {name} ({bootstrap_samples} bootstrap resamples of targets)")
        pooled = np.where(common, attacks.scores[name], np.nan)
        evaluations[name] = evaluate_attack(pooled, attacks.member, seed, bootstrap_samples)
    risk, count_in, count_out = per_example_auc(attacks.scores["lira_online"], attacks.member)
    correlations = {}
    if attacks.accumulator is not None:
        memorization = attacks.accumulator.memorization(0.0).memorization
        cscore = attacks.accumulator.cscores().cscore
        correlations["memorization"] = rank_correlation(risk, memorization)
        correlations["cscore"] = rank_correlation(risk, cscore)
    return PrivacyResult(
        attacks,
        evaluations,
        risk,
        count_in,
        count_out,
        correlations,
        statistic,
        min_shadows,
        fix_variance,
    )
