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
import zipfile

from heldout.errors import CompareError  # noqa: F401 - re-exported
import numpy as np

PAIR_KEYS = ("tr_idx", "tt_idx", "infl", "mem")




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
    """Agreement of two score vectors in the same example order; NaNs on either side skipped."""
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
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
    """Reads a published `*_high_infl_pairs_*.npz` (keys tr_idx, tt_idx, infl, mem)."""
    source = os.fspath(path)
    try:
        with np.load(source, allow_pickle=False) as npz:
            missing = [key for key in PAIR_KEYS if key not in npz.files]
            if missing:
                raise CompareError(f"{source}: missing keys {missing} (expected {list(PAIR_KEYS)})")
            arrays = {key: npz[key] for key in PAIR_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        if isinstance(error, CompareError):
            raise
        raise CompareError(f"{source}: cannot read as a numpy .npz file ({error})") from None
    lengths = {key: value.shape for key, value in arrays.items()}
    if len(set(lengths.values())) != 1 or arrays["tr_idx"].ndim != 1:
        raise CompareError(f"{source}: arrays must be 1-D and equally long, got {lengths}")
    for key in ("tr_idx", "tt_idx"):
        if not np.issubdtype(arrays[key].dtype, np.integer):
            raise CompareError(f"{source}: {key} has dtype {arrays[key].dtype}; expected integers")
    return InfluencePairs(
        train_index=arrays["tr_idx"].astype(np.int64),
        test_index=arrays["tt_idx"].astype(np.int64),
        influence=arrays["infl"].astype(np.float64),
        memorization=arrays["mem"].astype(np.float64),
        source=source,
    )


def pair_recovery(
    pairs: InfluencePairs, influence: np.ndarray, threshold: float = 0.15
) -> PairRecovery:
    """Looks every published pair up in our dense `influence[N_test, N_train]`."""
    num_test, num_train = influence.shape
    if pairs.test_index.size and (
        pairs.test_index.max() >= num_test or pairs.train_index.max() >= num_train
    ):
        raise CompareError(
            f"{pairs.source}: pair indices reach test {pairs.test_index.max()} / train "
            f"{pairs.train_index.max()}, but the influence matrix is {num_test} x {num_train}"
        )
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
