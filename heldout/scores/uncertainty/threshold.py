"""Whether a fixed influence threshold means anything at the runs behind it.

`heldout scores` reports how many test examples have an influence >= 0.15; beside an
FDR-controlled selection that number must say how many of those values survive it, or
that the runs are too few for the threshold to be read at all (its standard error).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from heldout.scores.results import Influence, SignificantPairs
from heldout.scores.uncertainty import hypergeometric as hg
from heldout.scores.uncertainty.pairs import benjamini_hochberg

__all__ = ["ThresholdCheck", "check_influence_threshold", "influence_standard_error"]

INFLUENCE_THRESHOLD = 0.15  # the published high-influence pairs' threshold
_NOISE_FACTOR = 2.0  # a threshold below this many standard errors is within noise
_ROWS_PER_BLOCK = 128  # test examples recounted at a time (bounded memory)


@dataclasses.dataclass(frozen=True)
class ThresholdCheck:
    """A fixed influence threshold set beside the false-discovery rule.

    Attributes:
      threshold: the influence threshold, e.g. 0.15.
      num_above: test examples with a training example whose influence >= threshold.
      fdr: the false-discovery rate of the rule.
      num_runs, count_in, count_out: R and the median runs in / out of a training example.
      standard_error: the largest standard error of one influence estimate at those
        counts, 0.5 sqrt(1 / n_in + 1 / n_out).
      too_few_runs: the threshold is below 2 standard errors: it separates nothing.
      num_surviving: of `num_above`, those with a pair >= threshold that Benjamini-Hochberg
        selects at `fdr` among every pair (Fisher's exact tests on the same counts); None
        where not counted (too few runs, or no dense matrix to recount from).
    """

    threshold: float
    num_above: int
    fdr: float
    num_runs: int
    count_in: float
    count_out: float
    standard_error: float
    too_few_runs: bool
    num_surviving: int | None


def influence_standard_error(
    count_in: np.ndarray, count_out: np.ndarray
) -> tuple[float, float, float]:
    """The largest standard error of one influence estimate at the typical counts.

    A difference of two proportions varies most at p = 0.5: 0.5 sqrt(1/n_in + 1/n_out).

    Args:
      count_in, count_out: int [N]: runs with each training example in / held out.

    Returns:
      (median n_in, median n_out, that standard error) over the columns with both
      counts positive; NaNs where there is none.
    """
    defined = (count_in > 0) & (count_out > 0)
    if not defined.any():
        return float("nan"), float("nan"), float("nan")
    n_in = float(np.median(count_in[defined]))
    n_out = float(np.median(count_out[defined]))
    return n_in, n_out, 0.5 * math.sqrt(1.0 / n_in + 1.0 / n_out)


def check_influence_threshold(
    influence: Influence,
    row_max: np.ndarray,
    threshold: float = INFLUENCE_THRESHOLD,
    fdr: float = 0.05,
    pairs: SignificantPairs | None = None,
) -> ThresholdCheck:
    """How many test examples above `threshold` survive FDR control at `fdr`.

    Args:
      influence: the estimates (dense or top-k) with the counts behind them.
      row_max: float [N_test]: each test example's largest influence (NaN where none).
      threshold: the fixed threshold reported.
      fdr: the false-discovery rate of the Benjamini-Hochberg selection.
      pairs: pairs selected from the same runs; counted directly when they were selected
        at `fdr` among every training example.

    Returns:
      The check; when the runs are not too few, `num_surviving` is counted from `pairs`
      (where they fit), else recounted from a dense in-memory matrix whose test
      correctness counts are known, else None.
    """
    with np.errstate(invalid="ignore"):
        above = np.asarray(row_max) >= threshold
    n_in, n_out, error = influence_standard_error(influence.count_in, influence.count_out)
    too_few = not error * _NOISE_FACTOR <= threshold  # NaN: no defined estimate at all
    surviving = None
    matrix = influence.matrix
    same_rule = pairs is not None and pairs.min_memorization is None and pairs.fdr == fdr
    if not too_few and same_rule:
        with np.errstate(invalid="ignore"):  # the very selection, already made
            surviving = int(np.unique(pairs.test_index[pairs.influence >= threshold]).size)
    elif (
        not too_few and isinstance(matrix, np.ndarray) and influence.test_correct_count is not None
    ):
        surviving = _count_surviving(influence, threshold, fdr)
    return ThresholdCheck(
        threshold=threshold,
        num_above=int(np.count_nonzero(above)),
        fdr=fdr,
        num_runs=influence.num_runs,
        count_in=n_in,
        count_out=n_out,
        standard_error=error,
        too_few_runs=too_few,
        num_surviving=surviving,
    )


def _count_surviving(influence: Influence, threshold: float, fdr: float) -> int:
    """Test examples with a pair >= threshold that BH selects at `fdr` over all pairs.

    S is recovered exactly from each float32 value and the counts. Only pairs at or above
    their critical count can be selected (as in `pairs.SignificantPairsAccumulator`); BH
    over cheap lower bounds of their p-values bounds the threshold from above, and only
    the pairs under that bound get an exact p-value: the selection is BH's over all pairs.
    """
    runs = influence.num_runs
    count_in = influence.count_in.astype(np.int64)
    correct = influence.test_correct_count.astype(np.int64)
    family = (count_in > 0) & (count_in < runs)
    num_tests = int(family.sum()) * correct.size
    log_fact = hg.log_factorials(runs)
    test, train, s, value = _candidates(influence, count_in, correct, family, fdr, log_fact)
    bound = hg.log_sf_lower_bound(s, count_in[train], correct[test], runs, log_fact)
    chosen, _ = benjamini_hochberg(bound, num_tests, fdr)
    if chosen.size == 0:
        return 0
    within = bound <= math.log(fdr) + math.log(chosen.size) - math.log(num_tests)
    test, train, s, value = test[within], train[within], s[within], value[within]
    log_p = hg.log_sf(s, count_in[train], correct[test], runs, log_fact)
    chosen, _ = benjamini_hochberg(log_p, num_tests, fdr)
    with np.errstate(invalid="ignore"):
        above = value[chosen] >= threshold
    return int(np.unique(test[chosen][above]).size)


def _candidates(influence, count_in, correct, family, fdr, log_fact):
    """(test, train, S, influence) of the pairs at or above their critical count, read
    from the dense matrix a block of rows at a time.

    Influence grows with S at fixed counts, so no pair below the smallest critical
    influence can pass: one float32 comparison rules out most of the matrix, and S is
    recovered only for the values above it.
    """
    runs = influence.num_runs
    c_values, c_class = np.unique(correct, return_inverse=True)
    n_values, n_class = np.unique(count_in, return_inverse=True)
    critical = hg.critical_successes(n_values, c_values, runs, fdr, log_fact)
    lowest = _lowest_critical_influence(critical, n_values, c_values, runs, family, n_class)
    critical = np.concatenate([critical, np.full((c_values.size, 1), runs + 1)], axis=1)
    column_class = np.where(family, n_class.reshape(-1), n_values.size)
    row_class = c_class.reshape(-1)
    empty = np.zeros(0, np.int64)
    tests, trains, successes, found = [empty], [empty], [empty], [np.zeros(0)]
    for t0 in range(0, correct.size, _ROWS_PER_BLOCK):
        block = influence.matrix[t0 : t0 + _ROWS_PER_BLOCK]
        with np.errstate(invalid="ignore"):
            row, column = np.nonzero(block >= lowest)  # False for NaN
        values = block[row, column].astype(np.float64)
        n_in = count_in[column]
        c = correct[row + t0]
        s = np.rint((values * (n_in * (runs - n_in)) + c * n_in) / runs).astype(np.int64)
        kept = s >= critical[row_class[row + t0], column_class[column]]
        tests.append(row[kept] + t0)
        trains.append(column[kept])
        successes.append(s[kept])
        found.append(values[kept])
    return (
        np.concatenate(tests).astype(np.int64),
        np.concatenate(trains).astype(np.int64),
        np.concatenate(successes),
        np.concatenate(found),
    )


def _lowest_critical_influence(critical, n_values, c_values, runs, family, n_class) -> float:
    """The smallest influence any pair of the family needs to reach its critical count,
    lowered by a margin for float32 rounding (inf: none can)."""
    in_family = np.zeros(n_values.size, bool)
    in_family[n_class.reshape(-1)[family]] = True
    n = n_values[in_family].astype(np.float64)[None, :]
    c = c_values.astype(np.float64)[:, None]
    s = critical[:, in_family].astype(np.float64)
    reachable = s <= np.minimum(n, c)
    if not reachable.any():
        return np.inf
    value = (runs * s - c * n) / (n * (runs - n))
    return float(value[reachable].min()) - 1e-5
