"""What backs each pick of the influence figure: its q-value and its interval's lower limit.

The q-values come from the Benjamini-Hochberg selection `influence_pairs` makes (the file's
`pairs_*` arrays, or the same accumulator run over the experiment's runs), so the figure
and `heldout scores --scores=influence_pairs` agree. When no pair survives, the figure
offers the pairs of highest lower limit instead of the highest estimates, which are noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from heldout.plots.influence import topk_from_dense
from heldout.scores import file as keys
from heldout.scores.results import Influence, SignificantPairs
from heldout.scores.uncertainty.intervals import influence_intervals
from heldout.scores.uncertainty.pairs import SignificantPairsAccumulator, q_values_of

DEFAULT_FDR = 0.05
DEFAULT_CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class InfluenceEvidence:
    """The FDR selection behind the influence figure, and what its intervals need.

    Attributes:
      pairs: the Benjamini-Hochberg selection of the runs behind the influence.
      test_correct_count: int [N_test]: runs that got each test example right, or None
        (then only the file's own interval limits can order the picks).
      runs: the runs read, or None: they give the q-value of a pair not selected (else
        only "above the FDR").
    """

    pairs: SignificantPairs
    test_correct_count: np.ndarray | None = None
    runs: SignificantPairsAccumulator | None = None


@dataclasses.dataclass(frozen=True)
class InfluencePicks:
    """The pairs the figure shows per test example, with what backs them.

    Attributes:
      index, value: training examples and their influence [N_test, K] (-1 / NaN: none).
      q_value: their q-values [N_test, K]: the selection's where it selected the pair,
        else over the whole family from the runs; NaN where unknown (above the FDR).
      lower: the lower limits of their intervals [N_test, K], or None.
      by_lower_limit: whether each row is ordered by `lower` instead of `value`.
      heading: one sentence on what survives FDR control, for the figure's title.
    """

    index: np.ndarray
    value: np.ndarray
    q_value: np.ndarray
    lower: np.ndarray | None
    by_lower_limit: bool
    heading: str


def pairs_from_scores(scores: dict[str, np.ndarray]) -> SignificantPairs | None:
    """The selection a scores file holds (`--scores=influence_pairs`), or None."""
    if keys.PAIRS_Q_VALUE not in scores:
        return None
    minimum = float(scores[keys.PAIRS_MIN_MEMORIZATION])
    return SignificantPairs(
        subset_ratio=_float_or_none(scores.get(keys.SCORE_SUBSET_RATIO)),
        num_runs=int(scores[keys.PAIRS_NUM_RUNS]),
        fdr=float(scores[keys.PAIRS_FDR]),
        min_memorization=None if np.isnan(minimum) else minimum,
        num_tests=int(scores[keys.PAIRS_NUM_TESTS]),
        train_index=np.asarray(scores[keys.PAIRS_TRAIN_INDEX]),
        test_index=np.asarray(scores[keys.PAIRS_TEST_INDEX]),
        influence=np.asarray(scores[keys.PAIRS_INFLUENCE]),
        p_value=np.asarray(scores[keys.PAIRS_P_VALUE]),
        q_value=np.asarray(scores[keys.PAIRS_Q_VALUE]),
        memorization=np.asarray(scores[keys.PAIRS_MEMORIZATION]),
    )


def influence_evidence_for(
    scores: dict[str, np.ndarray], experiment=None, fdr: float = DEFAULT_FDR
) -> InfluenceEvidence | None:
    """The selection behind a scores file's influence: the file's, or the experiment's.

    Reads the experiment's runs at the score ratio (when given and they are the runs behind
    the influence: same number, same counts) through `SignificantPairsAccumulator`, the
    selection `influence_pairs` makes, with the file's FDR and family where it has pairs.

    Args:
      scores: the arrays of a scores file.
      experiment: the `heldout.release.layout.Experiment` scored, or None.
      fdr: the rate when the file has no pairs of its own.

    Returns:
      The evidence, or None when the file has no pairs and the runs cannot be read.
    """
    pairs = pairs_from_scores(scores)
    count_in = scores.get(keys.INFLUENCE_COUNT_IN)
    ratio = _float_or_none(scores.get(keys.SCORE_SUBSET_RATIO))
    if experiment is None or count_in is None or ratio is None:
        return None if pairs is None else InfluenceEvidence(pairs)
    runs = experiment.runs_at(ratio)
    if len(runs) != int(scores.get(keys.INFLUENCE_NUM_RUNS, -1)):
        return None if pairs is None else InfluenceEvidence(pairs)
    accumulator = SignificantPairsAccumulator(
        ratio,
        fdr if pairs is None else pairs.fdr,
        None if pairs is None else pairs.min_memorization,
    )
    for run in runs:
        accumulator.add(run.load_aux())
    if not np.array_equal(accumulator.count_in, count_in):  # not the runs behind the file
        return None if pairs is None else InfluenceEvidence(pairs)
    return InfluenceEvidence(
        pairs if pairs is not None else accumulator.result(),
        accumulator.test_correct_count,
        accumulator,
    )


def influence_picks(
    scores: dict[str, np.ndarray],
    index: np.ndarray,
    value: np.ndarray,
    evidence: InfluenceEvidence,
    min_runs: int = 0,
) -> InfluencePicks:
    """The figure's pairs with their q-values; by lower limit when none survives.

    Args:
      scores: the arrays of the scores file (counts, intervals if written).
      index, value: each test example's top influences [N_test, K] by estimate, as
        `influence_topk` gives them (few-run columns already left out).
      evidence: the selection (`influence_evidence_for`).
      min_runs: the `min_runs` `influence_topk` was given (a dense file's reordering
        leaves out the same columns).

    Returns:
      The picks. With no pair selected and intervals at hand, each row is reordered by
      lower limit (a dense file: the K pairs of highest lower limit over all columns).
    """
    pairs = evidence.pairs
    survivors = int(pairs.q_value.size)
    family = (
        f"Benjamini-Hochberg over {pairs.num_tests:,} (test, training) pairs of "
        f"{pairs.num_runs} runs"
        + (
            ""
            if pairs.min_memorization is None
            else f", memorization >= {pairs.min_memorization:g}"
        )
    )
    confidence = float(scores.get(keys.CONFIDENCE, DEFAULT_CONFIDENCE))
    lower = None
    if survivors == 0:
        dense = keys.INFLUENCE in scores and keys.INFLUENCE_TOPK_INDEX not in scores
        if dense:
            index, value, lower = _dense_by_lower_limit(
                scores, index, value, evidence, confidence, min_runs
            )
        else:
            lower = _lower_limits(scores, index, value, evidence, confidence)
            if lower is not None:
                order = np.argsort(-np.nan_to_num(lower, nan=-np.inf), axis=1, kind="stable")
                index, value, lower = (
                    np.take_along_axis(a, order, axis=1) for a in (index, value, lower)
                )
    rows = np.broadcast_to(np.arange(index.shape[0])[:, None], index.shape)
    q_value = q_values_of(pairs, rows, index)
    if evidence.runs is not None:  # the pairs not selected: their q over the family
        family_q = evidence.runs.family_q_values(rows, index)
        if family_q is not None:
            q_value = np.where(np.isnan(q_value), family_q, q_value)
    if survivors:
        heading = (
            f"{survivors:,} {'pair survives' if survivors == 1 else 'pairs survive'} FDR "
            f"{pairs.fdr:g} ({family}); q beside each pick, greyed: does not survive"
        )
    elif lower is not None:
        heading = (
            f"No pair survives FDR {pairs.fdr:g} ({family}): all greyed.\nEach row ordered by "
            f"the lower limit of the pair's {confidence:.0%} interval (one pair's, not corrected "
            "for the pairs tested), not by the estimate"
        )
    else:
        heading = (
            f"No pair survives FDR {pairs.fdr:g} ({family}): all greyed (no intervals to "
            "order them by: ordered by the estimate)"
        )
    return InfluencePicks(index, value, q_value, lower, lower is not None, heading)


def _lower_limits_of(scores, evidence, confidence, **estimates) -> np.ndarray:
    """Lower interval limits of influence `estimates` (`matrix=`, or `topk_index=` and
    `topk_value=`) from the file's counts and the runs' test correctness."""
    influence = Influence(
        subset_ratio=None,
        num_runs=int(scores[keys.INFLUENCE_NUM_RUNS]),
        count_in=scores[keys.INFLUENCE_COUNT_IN],
        count_out=scores[keys.INFLUENCE_COUNT_OUT],
        **estimates,
    )
    low, _ = influence_intervals(influence, evidence.test_correct_count, confidence)
    return low


def _lower_limits(scores, index, value, evidence, confidence) -> np.ndarray | None:
    """Lower interval limits of the top-k pairs (index, value) [T, K], or None."""
    if evidence.test_correct_count is not None:
        low = _lower_limits_of(
            scores, evidence, confidence, topk_index=index, topk_value=value.astype(np.float32)
        )
        return np.where(index >= 0, low, np.nan)
    file_low = scores.get(keys.ci_low_key(keys.INFLUENCE))
    if file_low is None or keys.INFLUENCE_TOPK_INDEX not in scores:
        return None
    # The file's limits sit beside its own top-k; find each pick among them.
    file_index = scores[keys.INFLUENCE_TOPK_INDEX]
    same = file_index[:, None, :] == index[:, :, None]
    found = np.take_along_axis(file_low, same.argmax(axis=2), axis=1)
    return np.where(same.any(axis=2) & (index >= 0), found, np.nan)


def _dense_by_lower_limit(scores, index, value, evidence, confidence, min_runs):
    """A dense file's K pairs per test example of highest lower limit, or the input."""
    matrix = np.asarray(scores[keys.INFLUENCE])
    if min_runs > 0:  # the columns `influence_topk` leaves out stay out
        few = (scores[keys.INFLUENCE_COUNT_IN] < min_runs) | (
            scores[keys.INFLUENCE_COUNT_OUT] < min_runs
        )
        matrix = np.where(few[np.newaxis, :], np.nan, matrix).astype(np.float32)
    if evidence.test_correct_count is not None:
        low = _lower_limits_of(scores, evidence, confidence, matrix=matrix)
    elif keys.ci_low_key(keys.INFLUENCE) in scores:
        low = np.where(np.isnan(matrix), np.nan, scores[keys.ci_low_key(keys.INFLUENCE)])
    else:
        return index, value, None
    by_lower, lower = topk_from_dense(low, index.shape[1])
    return by_lower, np.take_along_axis(matrix, by_lower, axis=1), lower


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)
