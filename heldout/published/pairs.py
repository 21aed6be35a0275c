"""The high-influence pairs files (`*_high_infl_pairs_infl0.15_mem0.25.npz`): read, checked,
written, and selected from our influence estimates with the published thresholds.

Keys `tr_idx`, `tt_idx` (int), `infl`, `mem` (float): one entry per (training, test) pair
whose influence and training memorization are at or above the thresholds in the name.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from heldout._core.atomic import write_npz_atomic
from heldout.errors import CompareError, PublishedFileError
from heldout.published.format import (
    DEFAULT_MIN_INFLUENCE,
    DEFAULT_MIN_MEMORIZATION,
    PAIR_KEYS,
    SHOW,
    check_threshold,
    is_real,
    load_arrays,
    provenance_arrays,
    provenance_from,
    values_in_range,
)

_THRESHOLDS_IN_NAME = re.compile(r"infl([0-9.]+?)_mem([0-9.]+?)(?:\.npz)?$")


@dataclasses.dataclass(frozen=True)
class PublishedPairs:
    """High-influence pairs: training index, test index, influence, memorization.

    Checked once on creation, so every lookup can trust them: indices are non-negative
    integers (negative ones would wrap around in numpy indexing), values are numbers,
    all four arrays are 1-D and equally long, and no (train, test) pair occurs twice.
    """

    train_index: np.ndarray
    test_index: np.ndarray
    influence: np.ndarray
    memorization: np.ndarray
    source: str = "<memory>"
    provenance: dict | None = None

    def __post_init__(self):
        arrays = {
            "tr_idx": np.asarray(self.train_index),
            "tt_idx": np.asarray(self.test_index),
            "infl": np.asarray(self.influence),
            "mem": np.asarray(self.memorization),
        }
        shapes = {key: value.shape for key, value in arrays.items()}
        if len(set(shapes.values())) != 1 or arrays["tr_idx"].ndim != 1:
            raise PublishedFileError(
                f"{self.source}: arrays must be 1-D and equally long, got {shapes}"
            )
        for key in ("tr_idx", "tt_idx"):
            values = arrays[key]
            if not np.issubdtype(values.dtype, np.integer):
                raise PublishedFileError(
                    f"{self.source}: {key} has dtype {values.dtype}; expected integer indices"
                )
            negative = np.flatnonzero(values < 0)
            if negative.size:
                shown = values[negative[:SHOW]].tolist()
                raise PublishedFileError(
                    f"{self.source}: {key} holds {negative.size} negative index(es), e.g. "
                    f"{shown} at pair(s) {negative[:SHOW].tolist()}"
                    f"{' ...' if negative.size > SHOW else ''}; indices are positions "
                    "0..N-1 in the split"
                )
        for key in ("infl", "mem"):
            if not is_real(arrays[key]):
                raise PublishedFileError(
                    f"{self.source}: {key} has dtype {arrays[key].dtype}; expected numbers"
                )
            # Both are differences of two accuracies: finite and within [-1, 1].
            values_in_range(arrays[key], key, self.source, -1.0, 1.0)
        object.__setattr__(self, "train_index", arrays["tr_idx"].astype(np.int64))
        object.__setattr__(self, "test_index", arrays["tt_idx"].astype(np.int64))
        object.__setattr__(self, "influence", arrays["infl"].astype(np.float64))
        object.__setattr__(self, "memorization", arrays["mem"].astype(np.float64))
        keys = self.keys()
        unique, counts = np.unique(keys, return_counts=True)
        if unique.size != keys.size:
            twice = unique[counts > 1][:SHOW]
            shown = [divmod(int(k), 1 << 32) for k in twice]
            raise PublishedFileError(
                f"{self.source}: {keys.size - unique.size} (train, test) pair(s) occur more "
                f"than once, e.g. {shown}"
            )

    def __len__(self) -> int:
        return int(self.train_index.size)

    def keys(self) -> np.ndarray:
        """int64 [n]: one number per pair (train << 32 | test), for set operations."""
        return (self.train_index << 32) | self.test_index

    def check_thresholds(self, min_influence: float, min_memorization: float) -> None:
        """Raises unless every pair has influence >= and memorization >= the thresholds."""
        below = np.flatnonzero(
            (self.influence < min_influence) | (self.memorization < min_memorization)
        )
        if below.size:
            raise PublishedFileError(
                f"{self.source}: {below.size} of {len(self)} pairs lie below the thresholds "
                f"influence >= {min_influence:g}, memorization >= {min_memorization:g} (e.g. "
                f"pair {int(below[0])}: infl {self.influence[below[0]]:.4f}, mem "
                f"{self.memorization[below[0]]:.4f})"
            )


def thresholds_in_name(path: str | os.PathLike) -> tuple[float, float] | None:
    """(min influence, min memorization) from a name like `..._infl0.15_mem0.25.npz`."""
    match = _THRESHOLDS_IN_NAME.search(Path(path).name)
    if not match:
        return None
    try:
        return float(match.group(1)), float(match.group(2))
    except ValueError:
        return None


def load_influence_pairs(path: str | os.PathLike, check_name: bool = True) -> PublishedPairs:
    """Reads a `*_high_infl_pairs_*.npz` (keys tr_idx, tt_idx, infl, mem).

    Args:
      path: the pairs file.
      check_name: when the file name states thresholds (`infl0.15_mem0.25`), refuse a
        file whose pairs do not all meet them (a file renamed or cut wrongly).

    Returns:
      The pairs, checked (see `PublishedPairs`).

    Raises:
      PublishedFileError (a CompareError): the file is missing, unreadable, lacks a key,
        holds indices that are not non-negative integers of one length, values that are
        not finite numbers in [-1, 1], repeats a pair, or breaks the thresholds of its
        name; the message starts with the file.
    """
    source = os.fspath(path)
    arrays = load_arrays(source, "a high-influence pairs .npz file", keys=PAIR_KEYS)
    pairs = PublishedPairs(
        train_index=arrays["tr_idx"],
        test_index=arrays["tt_idx"],
        influence=arrays["infl"],
        memorization=arrays["mem"],
        source=source,
        provenance=provenance_from(arrays, source),
    )
    thresholds = thresholds_in_name(source) if check_name else None
    if thresholds is not None:
        pairs.check_thresholds(*thresholds)
    return pairs


def save_influence_pairs(
    path: str | os.PathLike, pairs: PublishedPairs, provenance: dict | None = None
) -> None:
    """Writes pairs in the published format (int64 indices, float64 values), atomically.

    Args:
      path: the `.npz` to write; `pairs_file_name` gives the published naming.
      pairs: the pairs (checked when they were built: `PublishedPairs`).
      provenance: what the pairs were computed from, stored as a JSON string; None
        stores none.

    Returns:
      None; the file is complete when this returns (or absent, after an error).

    Raises:
      OSError: the file cannot be written (nothing is left at `path` then).
    """
    arrays = {
        "tr_idx": pairs.train_index,
        "tt_idx": pairs.test_index,
        "infl": pairs.influence,
        "mem": pairs.memorization,
    }
    write_npz_atomic(path, {**arrays, **provenance_arrays(provenance)})


def pairs_file_name(prefix: str, min_influence: float, min_memorization: float) -> str:
    """The published naming: `<prefix>_high_infl_pairs_infl0.15_mem0.25.npz`."""
    return f"{prefix}_high_infl_pairs_infl{min_influence:g}_mem{min_memorization:g}.npz"


def ordered_pairs(train, test, influence, memorization, source, provenance) -> PublishedPairs:
    """Pairs sorted by decreasing influence (then train, test index): reproducible files."""
    order = np.lexsort((test, train, -influence))
    return PublishedPairs(
        train[order], test[order], influence[order], memorization[order], source, provenance
    )


def select_pairs_dense(
    influence: np.ndarray,
    memorization: np.ndarray,
    min_influence: float = DEFAULT_MIN_INFLUENCE,
    min_memorization: float = DEFAULT_MIN_MEMORIZATION,
    provenance: dict | None = None,
) -> PublishedPairs:
    """Pairs with influence >= and memorization >= the thresholds, from a dense matrix.

    Args:
      influence: float [N_test, N_train] (our `influence`, test examples along axis 0).
      memorization: float [N_train]; NaN (undefined) never passes.
      min_influence, min_memorization: the published defaults 0.15 and 0.25.
      provenance: recorded with the pairs.

    Returns:
      The pairs passing both thresholds, by decreasing influence (then train, test).

    Raises:
      CompareError: shapes that do not fit each other.
      UsageError: a threshold that is not a finite number in [0, 1].
    """
    min_influence = check_threshold(min_influence, "min_influence")
    min_memorization = check_threshold(min_memorization, "min_memorization")
    influence, memorization = np.asarray(influence), np.asarray(memorization)
    if influence.ndim != 2 or memorization.shape != influence.shape[1:]:
        raise CompareError(
            f"influence [N_test, N_train] and memorization [N_train] do not fit: "
            f"{influence.shape} and {memorization.shape}"
        )
    with np.errstate(invalid="ignore"):
        memorized = np.flatnonzero(memorization >= min_memorization)
        block = influence[:, memorized]
        test, column = np.nonzero(block >= min_influence)
    train = memorized[column]
    return ordered_pairs(
        train.astype(np.int64),
        test.astype(np.int64),
        block[test, column].astype(np.float64),
        memorization[train].astype(np.float64),
        "<selected>",
        provenance,
    )


def select_pairs_topk(
    topk_index: np.ndarray,
    topk_value: np.ndarray,
    memorization: np.ndarray,
    min_influence: float = DEFAULT_MIN_INFLUENCE,
    min_memorization: float = DEFAULT_MIN_MEMORIZATION,
    provenance: dict | None = None,
) -> tuple[PublishedPairs, int]:
    """Pairs from top-k influence (`influence_topk_index`/`_value` [N_test, k]).

    Args:
      topk_index: int [N_test, k], training positions; negative marks an empty slot.
      topk_value: float [N_test, k], their influence.
      memorization: float [N_train]; NaN (undefined) never passes.
      min_influence, min_memorization: the published defaults 0.15 and 0.25.
      provenance: recorded with the pairs.

    Raises:
      CompareError: top-k index and value shapes that differ or are not 2-D.
      UsageError: a threshold that is not a finite number in [0, 1].

    Returns:
      (pairs, saturated): `saturated` counts the test examples whose k-th value still
      passes the influence threshold, i.e. which may have more qualifying pairs than k
      shows (recompute with a larger k, or dense, when it is not 0).
    """
    min_influence = check_threshold(min_influence, "min_influence")
    min_memorization = check_threshold(min_memorization, "min_memorization")
    index, value = np.asarray(topk_index), np.asarray(topk_value, dtype=np.float64)
    memorization = np.asarray(memorization, dtype=np.float64)
    if index.shape != value.shape or index.ndim != 2:
        raise CompareError(f"top-k index and value shapes differ: {index.shape}, {value.shape}")
    valid = index >= 0
    safe = np.where(valid, index, 0)
    with np.errstate(invalid="ignore"):
        passes = valid & (value >= min_influence) & (memorization[safe] >= min_memorization)
        saturated = int(np.count_nonzero(valid[:, -1] & (value[:, -1] >= min_influence)))
    test, slot = np.nonzero(passes)
    train = index[test, slot]
    pairs = ordered_pairs(
        train.astype(np.int64),
        test.astype(np.int64),
        value[test, slot],
        memorization[train],
        "<selected>",
        provenance,
    )
    return pairs, saturated
