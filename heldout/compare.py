"""Compare recomputed scores with published ones (or two of our own score files).

A researcher who recomputes C-scores or memorization from the released aux arrays wants
one number that says "this agrees with the paper's file": rank and linear correlation over
the examples both sides define, plus how many were left out. For influence, the published
artifact is a list of high-influence (train, test) pairs; we report how many of them our
estimates recover. No TensorFlow, no pickles: it runs where the score tools run.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from heldout.errors import CompareError  # noqa: F401 - re-exported
from heldout.io import load_npz

PAIR_KEYS = ("tr_idx", "tt_idx", "infl", "mem")
_SHOW = 5  # offending values listed in an error message


def _is_real(values: np.ndarray) -> bool:
    """Integer, float or bool: what a score or influence can be (not str, complex, object)."""
    return (
        values.dtype == np.bool_
        or np.issubdtype(values.dtype, np.integer)
        or (np.issubdtype(values.dtype, np.floating))
    )


@dataclasses.dataclass(frozen=True)
class ScoreAgreement:
    """How two per-example score vectors agree on the examples both define (not NaN)."""

    num_examples: int
    num_compared: int
    pearson: float
    spearman: float
    mean_abs_difference: float
    max_abs_difference: float


@dataclasses.dataclass(frozen=True)
class InfluencePairs:
    """Published high-influence pairs: training index, test index, influence, memorization."""

    train_index: np.ndarray
    test_index: np.ndarray
    influence: np.ndarray
    memorization: np.ndarray
    source: str = "<memory>"

    def __post_init__(self):
        """Checks the pairs once, so every lookup can trust them.

        Negative indices would silently wrap around in numpy indexing (pair -1 would be
        looked up in the last row), and float indices would be truncated: both are refused
        here, with the offending values.
        """
        arrays = {
            "tr_idx": np.asarray(self.train_index),
            "tt_idx": np.asarray(self.test_index),
            "infl": np.asarray(self.influence),
            "mem": np.asarray(self.memorization),
        }
        shapes = {key: value.shape for key, value in arrays.items()}
        if len(set(shapes.values())) != 1 or arrays["tr_idx"].ndim != 1:
            raise CompareError(f"{self.source}: arrays must be 1-D and equally long, got {shapes}")
        for key in ("tr_idx", "tt_idx"):
            values = arrays[key]
            if not np.issubdtype(values.dtype, np.integer):
                raise CompareError(
                    f"{self.source}: {key} has dtype {values.dtype}; expected integer indices"
                )
            negative = np.flatnonzero(values < 0)
            if negative.size:
                shown = values[negative[:_SHOW]].tolist()
                raise CompareError(
                    f"{self.source}: {key} holds {negative.size} negative index(es), e.g. "
                    f"{shown} at pair(s) {negative[:_SHOW].tolist()}"
                    f"{' ...' if negative.size > _SHOW else ''}; indices are positions "
                    "0..N-1 in the split"
                )
        for key in ("infl", "mem"):
            if not _is_real(arrays[key]):
                raise CompareError(
                    f"{self.source}: {key} has dtype {arrays[key].dtype}; expected numbers"
                )
        object.__setattr__(self, "train_index", arrays["tr_idx"].astype(np.int64))
        object.__setattr__(self, "test_index", arrays["tt_idx"].astype(np.int64))
        object.__setattr__(self, "influence", arrays["infl"].astype(np.float64))
        object.__setattr__(self, "memorization", arrays["mem"].astype(np.float64))


@dataclasses.dataclass(frozen=True)
class PairRecovery:
    """How many published pairs our influence estimates find."""

    num_pairs: int
    num_defined: int  # pairs whose estimate is not NaN (the example was both in and out)
    num_above_threshold: int  # our influence >= threshold
    threshold: float
    pearson: float  # between published and our values, over the defined pairs
    mean_abs_difference: float


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their mean rank (what Spearman's rho needs)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    is_new = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
    group = np.cumsum(is_new) - 1
    starts = np.flatnonzero(is_new)
    ends = np.append(starts[1:], values.size)
    mean_rank = (starts + ends + 1) / 2.0  # ranks start at 1
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")  # undefined for constant or single values
    return float(np.corrcoef(a, b)[0, 1])


def compare_scores(ours: np.ndarray, reference: np.ndarray) -> ScoreAgreement:
    """Agreement of two score vectors in the same example order; NaNs on either side skipped.

    Args:
      ours, reference: per-example scores [N], in the same example order.

    Returns:
      Rank and linear correlation and absolute differences over the examples both define.

    Raises:
      CompareError: the vectors are not 1-D, differ in length, or are not numbers.
    """
    ours, reference = np.asarray(ours), np.asarray(reference)
    for name, values in (("our scores", ours), ("the reference scores", reference)):
        if not _is_real(values):
            raise CompareError(f"{name} have dtype {values.dtype}; expected numbers")
    ours, reference = ours.astype(np.float64), reference.astype(np.float64)
    if ours.shape != reference.shape or ours.ndim != 1:
        raise CompareError(
            f"score vectors must be 1-D and equally long, got {ours.shape} and "
            f"{reference.shape}; are both for the same split and dataset?"
        )
    both = ~np.isnan(ours) & ~np.isnan(reference)
    a, b = ours[both], reference[both]
    difference = np.abs(a - b)
    return ScoreAgreement(
        num_examples=int(ours.size),
        num_compared=int(both.sum()),
        pearson=_pearson(a, b),
        spearman=_pearson(rankdata(a), rankdata(b)),
        mean_abs_difference=float(difference.mean()) if a.size else float("nan"),
        max_abs_difference=float(difference.max()) if a.size else float("nan"),
    )


def load_influence_pairs(path: str | os.PathLike) -> InfluencePairs:
    """Reads a published `*_high_infl_pairs_*.npz` (keys tr_idx, tt_idx, infl, mem).

    Args:
      path: the pairs file.

    Returns:
      The pairs, checked (see `InfluencePairs`).

    Raises:
      CompareError: the file is missing, unreadable, lacks a key, or holds indices that are
        not non-negative integers of one length; the message starts with the file.
    """
    source = os.fspath(path)
    arrays = load_npz(
        source, keys=PAIR_KEYS, error=CompareError, what="a high-influence pairs .npz file"
    )
    return InfluencePairs(
        train_index=arrays["tr_idx"],
        test_index=arrays["tt_idx"],
        influence=arrays["infl"],
        memorization=arrays["mem"],
        source=source,
    )


def _check_pair_range(pairs: InfluencePairs, num_test: int, num_train: int) -> None:
    """Every pair must name a cell of the `[num_test, num_train]` influence matrix."""
    outside = (pairs.test_index >= num_test) | (pairs.train_index >= num_train)
    if outside.any():
        where = np.flatnonzero(outside)
        shown = [(int(pairs.train_index[k]), int(pairs.test_index[k])) for k in where[:_SHOW]]
        raise CompareError(
            f"{pairs.source}: {where.size} pair(s) lie outside the influence matrix of "
            f"{num_test} test x {num_train} training examples, e.g. (train, test) = {shown}"
            f"{' ...' if where.size > _SHOW else ''}; are the pairs and the scores for the "
            "same dataset?"
        )


def pair_recovery(
    pairs: InfluencePairs, influence: np.ndarray, threshold: float = 0.15
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
    if influence.ndim != 2 or not _is_real(influence):
        raise CompareError(
            f"the influence estimates must be a real [test, train] matrix, got "
            f"{influence.dtype} {influence.shape}"
        )
    num_test, num_train = influence.shape
    _check_pair_range(pairs, num_test, num_train)
    ours = influence[pairs.test_index, pairs.train_index].astype(np.float64)
    defined = ~np.isnan(ours)
    difference = np.abs(ours[defined] - pairs.influence[defined])
    return PairRecovery(
        num_pairs=int(ours.size),
        num_defined=int(defined.sum()),
        num_above_threshold=int((ours[defined] >= threshold).sum()),
        threshold=threshold,
        pearson=_pearson(ours[defined], pairs.influence[defined]),
        mean_abs_difference=float(difference.mean()) if difference.size else float("nan"),
    )
