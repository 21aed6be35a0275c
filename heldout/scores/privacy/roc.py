"""Attack scores evaluated pooled over target runs, with bootstrap intervals over targets,
and the per-example distinguishability (`per_example_auc`) behind `privacy_risk`.

A ROC point is taken at each distinct score (ties move together). AUC is the trapezoid
area (a tie counts one half), balanced accuracy the best (TPR + 1 - FPR) / 2 over
thresholds, TPR at an FPR the largest TPR among points with FPR at most that.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "AttackEvaluation",
    "FPR_LEVELS",
    "evaluate_attack",
    "per_example_auc",
    "roc_curve",
    "roc_summary",
]

FPR_LEVELS = (0.001, 0.01)
BOOTSTRAP_SAMPLES = 200
METRICS = ("auc", "balanced_accuracy", "tpr_at_0.1%_fpr", "tpr_at_1%_fpr")


@dataclasses.dataclass(frozen=True)
class AttackEvaluation:
    """One attack pooled over targets.

    Attributes:
      values, ci_low, ci_high: metric name (`METRICS`) -> value and its percentile
        bootstrap 95 % interval over target runs.
      fpr, tpr: the pooled ROC curve, from (0, 0) to (1, 1).
      num_targets, num_members, num_nonmembers: what is behind it (pairs of a target and
        an example whose score is defined).
    """

    values: dict[str, float]
    ci_low: dict[str, float]
    ci_high: dict[str, float]
    fpr: np.ndarray
    tpr: np.ndarray
    num_targets: int
    num_members: int
    num_nonmembers: int


def _sorted_pool(scores: np.ndarray):
    """The order of `scores`, high first, and the last position of each run of ties (None
    where every score is distinct)."""
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    distinct = ordered[1:] != ordered[:-1]
    ends = None if distinct.all() else np.flatnonzero(np.append(distinct, True))
    return order, ends


def _curve(member_sorted: np.ndarray, weight_sorted: np.ndarray, ends: np.ndarray | None):
    """(fpr, tpr) from 0/1 float members and weights in score order, at each tie's end."""
    true_positives = np.cumsum(member_sorted * weight_sorted)
    false_positives = np.cumsum(weight_sorted)
    false_positives -= true_positives
    if ends is not None:
        true_positives, false_positives = true_positives[ends], false_positives[ends]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.concatenate([[0.0], true_positives / true_positives[-1]])
        fpr = np.concatenate([[0.0], false_positives / false_positives[-1]])
    return fpr, tpr


def roc_curve(scores: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC of `scores` (high: member) against bool `member`, one point per distinct
    score, from (0, 0).

    Returns:
      (fpr, tpr), float64, non-decreasing; NaN where a class is empty.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    member = np.asarray(member, dtype=bool).ravel()
    order, ends = _sorted_pool(scores)
    return _curve(member[order].astype(np.float64), np.ones(scores.size), ends)


def roc_summary(fpr: np.ndarray, tpr: np.ndarray) -> dict[str, float]:
    """AUC, balanced accuracy and TPR at each of `FPR_LEVELS` of one ROC curve."""
    if np.isnan(fpr[-1]) or np.isnan(tpr[-1]):
        return {name: math.nan for name in METRICS}
    summary = {
        "auc": float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0)),
        "balanced_accuracy": float(np.max((tpr + 1.0 - fpr) / 2.0)),
    }
    for level, name in zip(FPR_LEVELS, METRICS[2:], strict=True):
        summary[name] = float(np.max(tpr[fpr <= level]))
    return summary


def evaluate_attack(
    scores: np.ndarray,
    member: np.ndarray,
    seed: int = 0,
    samples: int = BOOTSTRAP_SAMPLES,
) -> AttackEvaluation:
    """An attack pooled over targets, its intervals from resampling target runs.

    Args:
      scores: float [targets, n]; NaN pairs are left out.
      member: bool [targets, n], True where the target trained on the example.
      seed: of the bootstrap.
      samples: bootstrap resamples (targets drawn with replacement; a target drawn twice
        weighs twice in the pooled ROC).

    Returns:
      The `AttackEvaluation`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    num_targets = scores.shape[0]
    defined = ~np.isnan(scores)
    target_of = np.broadcast_to(np.arange(num_targets)[:, None], scores.shape)[defined]
    pooled, pooled_member = scores[defined], member[defined]
    if pooled.size == 0:  # no pair with enough shadows: nothing to evaluate
        nan = {name: math.nan for name in METRICS}
        empty = np.array([math.nan])
        return AttackEvaluation(nan, dict(nan), dict(nan), empty, empty, num_targets, 0, 0)
    order, ends = _sorted_pool(pooled)
    member_sorted = pooled_member[order].astype(np.float64)
    target_sorted = target_of[order]
    fpr, tpr = _curve(member_sorted, np.ones(pooled.size), ends)
    values = roc_summary(fpr, tpr)
    rng = np.random.default_rng(seed)
    drawn = {name: np.empty(samples) for name in METRICS}
    for i in range(samples):
        counts = np.bincount(rng.integers(0, num_targets, num_targets), minlength=num_targets)
        weights = counts.astype(np.float64)[target_sorted]
        summary = roc_summary(*_curve(member_sorted, weights, ends))
        for name in METRICS:
            drawn[name][i] = summary[name]
    low, high = {}, {}
    for name in METRICS:
        finite = drawn[name][~np.isnan(drawn[name])]
        low[name], high[name] = (
            tuple(float(v) for v in np.percentile(finite, [2.5, 97.5]))
            if finite.size
            else (math.nan, math.nan)
        )
    members = int(np.count_nonzero(pooled_member))
    return AttackEvaluation(
        values, low, high, fpr, tpr, num_targets, members, int(pooled.size - members)
    )


def per_example_auc(
    scores: np.ndarray, member: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each example, the probability that a target training on it scores it higher than
    a target holding it out (ties count one half): the attack's AUC on that example alone.

    `privacy_risk` is this AUC rather than the mean score gap between member and non-member
    targets: the likelihood ratio's scale differs by orders of magnitude between examples,
    so a mean gap follows the one target whose phi lands deepest in a Gaussian tail and
    gaps of two examples do not compare. The AUC is scale-free, bounded (0.5: the attack
    cannot tell), and unchanged by any monotone transform of the score.

    Args:
      scores: float [targets, n], NaN where undefined (left out).
      member: bool [targets, n].

    Returns:
      (auc float64 [n], NaN where either side has no target; count_in, count_out int64 [n]:
      the member and non-member targets behind it).
    """
    scores = np.asarray(scores, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    defined = ~np.isnan(scores)
    count_in = (member & defined).sum(axis=0)
    count_out = (~member & defined).sum(axis=0)
    ranks = rankdata(scores, axis=0, nan_policy="omit")
    rank_sum = np.where(member & defined, ranks, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - count_in * (count_in + 1) / 2.0) / (count_in * count_out)
    auc[(count_in == 0) | (count_out == 0)] = np.nan
    return auc, count_in.astype(np.int64), count_out.astype(np.int64)
