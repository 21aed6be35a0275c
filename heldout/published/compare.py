"""Compare recomputed scores with published ones (or two of our own score files).

Rank and linear correlation over the examples both sides define, the overlap of the
lowest and highest 1 % and 10 %, rho within each class; for influence, how many published
high-influence pairs our estimates recover, and the precision and recall of our own pairs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from heldout._core.ranks import average_ranks, kendall_tau_b, pearson
from heldout.errors import CompareError
from heldout.published.extremes import EXTREME_FRACTIONS, ExtremeOverlap, extreme_overlaps
from heldout.published.format import SHOW, checked_pair, is_real
from heldout.published.pairs import PublishedPairs

__all__ = [
    "EXTREME_FRACTIONS",
    "ClassAgreement",
    "ExtremeOverlap",
    "PairRecovery",
    "PairSetAgreement",
    "ScoreAgreement",
    "check_pairs_covered",
    "compare_scores",
    "extreme_overlaps",
    "pair_recovery",
    "pair_set_agreement",
    "per_class_agreement",
]


@dataclasses.dataclass(frozen=True)
class ScoreAgreement:
    """How two per-example score vectors agree on the examples both define (not NaN).

    `kendall_tau_b` is Kendall's tau-b (ties in either vector handled as in
    `scipy.stats.kendalltau`); NaN when scipy is not installed or fewer than 2 examples.
    """

    num_examples: int
    num_compared: int
    pearson: float
    spearman: float
    mean_abs_difference: float
    max_abs_difference: float
    kendall_tau_b: float = float("nan")


@dataclasses.dataclass(frozen=True)
class ClassAgreement:
    """Spearman's rho within one class, over the examples both sides define."""

    label: int
    num_compared: int
    spearman: float


@dataclasses.dataclass(frozen=True)
class PairSetAgreement:
    """Our high-influence pairs against the published ones, as sets of (train, test).

    precision = common / ours (our pairs the published list confirms), recall = common /
    published (published pairs we find); NaN when the denominator is 0.
    """

    num_ours: int
    num_published: int
    num_common: int

    @property
    def precision(self) -> float:
        return self.num_common / self.num_ours if self.num_ours else float("nan")

    @property
    def recall(self) -> float:
        return self.num_common / self.num_published if self.num_published else float("nan")


@dataclasses.dataclass(frozen=True)
class PairRecovery:
    """How many published pairs our influence estimates find."""

    num_pairs: int
    num_defined: int  # pairs whose estimate is not NaN (the example was both in and out)
    num_above_threshold: int  # our influence >= threshold
    threshold: float
    pearson: float  # between published and our values, over the defined pairs
    mean_abs_difference: float


def per_class_agreement(
    ours: np.ndarray, reference: np.ndarray, labels: np.ndarray
) -> list[ClassAgreement]:
    """Spearman's rho inside each class (labels in the same example order as the scores).

    A high overall rho can come from the class means alone (some classes are easier);
    within-class rho says whether the examples are ranked alike inside a class.

    Raises:
      CompareError: as `compare_scores`, or labels of another length or not integers.
    """
    ours, reference = checked_pair(ours, reference)
    labels = np.asarray(labels)
    if labels.shape != ours.shape or not np.issubdtype(labels.dtype, np.integer):
        raise CompareError(
            f"labels must be integers shaped like the scores {ours.shape}, got "
            f"{labels.dtype} {labels.shape}"
        )
    both = ~np.isnan(ours) & ~np.isnan(reference)
    result = []
    for label in np.unique(labels):
        members = both & (labels == label)
        a, b = ours[members], reference[members]
        result.append(
            ClassAgreement(
                int(label), int(members.sum()), pearson(average_ranks(a), average_ranks(b))
            )
        )
    return result


def pair_set_agreement(ours: PublishedPairs, published: PublishedPairs) -> PairSetAgreement:
    """Precision and recall of our high-influence pairs against the published ones."""
    common = np.intersect1d(ours.keys(), published.keys()).size
    return PairSetAgreement(len(ours), len(published), int(common))


def compare_scores(ours: np.ndarray, reference: np.ndarray) -> ScoreAgreement:
    """Agreement of two score vectors in the same example order; NaNs on either side skipped.

    Args:
      ours, reference: per-example scores [N], in the same example order.

    Returns:
      Rank and linear correlation and absolute differences over the examples both define.

    Raises:
      CompareError: the vectors are not 1-D, differ in length, are not numbers, hold an
        infinity, or no example is defined (not NaN) on both sides.
    """
    ours, reference = checked_pair(ours, reference)
    both = ~np.isnan(ours) & ~np.isnan(reference)
    if not both.any():  # every statistic would be of nothing (or numpy's "zero-size array")
        raise CompareError(
            f"no example has a score on both sides: ours define {int(np.sum(~np.isnan(ours)))}"
            f" and the reference {int(np.sum(~np.isnan(reference)))} of {ours.size}"
        )
    a, b = ours[both], reference[both]
    difference = np.abs(a - b)
    return ScoreAgreement(
        num_examples=int(ours.size),
        num_compared=int(both.sum()),
        pearson=pearson(a, b),
        spearman=pearson(average_ranks(a), average_ranks(b)),
        mean_abs_difference=float(difference.mean()) if a.size else float("nan"),
        max_abs_difference=float(difference.max()) if a.size else float("nan"),
        kendall_tau_b=kendall_tau_b(a, b, min_count=2),
    )


def check_pairs_covered(pairs: PublishedPairs, num_test: int, num_train: int) -> None:
    """Every pair must name a cell of the `[num_test, num_train]` influence estimates
    (dense, or top-k rows of `num_test` test examples over `num_train` training ones).

    Outside them, no estimate could confirm a pair, and precision and recall would read
    0 as if that were a finding.

    Raises:
      CompareError: naming the pairs file, how many pairs lie outside, and examples.
    """
    outside = (pairs.test_index >= num_test) | (pairs.train_index >= num_train)
    if outside.any():
        where = np.flatnonzero(outside)
        shown = [(int(pairs.train_index[k]), int(pairs.test_index[k])) for k in where[:SHOW]]
        raise CompareError(
            f"{pairs.source}: {where.size} pair(s) lie outside the influence matrix of "
            f"{num_test} test x {num_train} training examples, e.g. (train, test) = {shown}"
            f"{' ...' if where.size > SHOW else ''}; are the pairs and the scores for the "
            "same dataset?"
        )


def pair_recovery(
    pairs: PublishedPairs, influence: np.ndarray, threshold: float = 0.15
) -> PairRecovery:
    """Looks every published pair up in our dense `influence[N_test, N_train]`.

    Args:
      pairs: published pairs (`load_influence_pairs`).
      influence: our dense influence estimates, test examples along the first axis.
      threshold: the influence at or above which a pair counts as recovered (the
        published files list pairs with influence >= 0.15).

    Returns:
      The counts and agreement over the pairs our estimates define.

    Raises:
      CompareError: `influence` is not a 2-D real matrix, or a pair lies outside it.
    """
    influence = np.asarray(influence)
    if influence.ndim != 2 or not is_real(influence):
        raise CompareError(
            f"the influence estimates must be a real [test, train] matrix, got "
            f"{influence.dtype} {influence.shape}"
        )
    num_test, num_train = influence.shape
    check_pairs_covered(pairs, num_test, num_train)
    ours = influence[pairs.test_index, pairs.train_index].astype(np.float64)
    defined = ~np.isnan(ours)
    difference = np.abs(ours[defined] - pairs.influence[defined])
    return PairRecovery(
        num_pairs=int(ours.size),
        num_defined=int(defined.sum()),
        num_above_threshold=int((ours[defined] >= threshold).sum()),
        threshold=threshold,
        pearson=pearson(ours[defined], pairs.influence[defined]),
        mean_abs_difference=float(difference.mean()) if difference.size else float("nan"),
    )
