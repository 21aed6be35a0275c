"""Reads an attribution tau from a file, in the layouts other tools write, and checks it.

Dense `.npy`/`.npz` [n_test, n_train] (ours) or [n_train, n_test] (TRAK's scores); top-k
as our scores files' `influence_topk_*` keys or `index` + `value`. Positions are those of
the full training and test splits (the aux arrays' `index_*`). Every refusal is one line
naming the file.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from heldout._core.npz import load_npz
from heldout.errors import InputFileError
from heldout.scores.attribution.lds import Attribution, SparseAttribution
from heldout.scores.file import INFLUENCE, INFLUENCE_TOPK_INDEX, INFLUENCE_TOPK_VALUE

__all__ = [
    "ORIENTATIONS",
    "TEST_BY_TRAIN",
    "TRAIN_BY_TEST",
    "LoadedAttribution",
    "load_attribution",
]

TEST_BY_TRAIN = "test_by_train"  # ours: tau[t, j]
TRAIN_BY_TEST = "train_by_test"  # TRAK's scores: [n_train, n_test]
ORIENTATIONS = (TEST_BY_TRAIN, TRAIN_BY_TEST)
_SPARSE_KEYS = ((INFLUENCE_TOPK_INDEX, INFLUENCE_TOPK_VALUE), ("index", "value"))


@dataclasses.dataclass(frozen=True)
class LoadedAttribution:
    """An attribution read from a file, and how it was read (for the user and provenance).

    Attributes:
      attribution: dense float32 [n_test, n_train] or a `SparseAttribution`.
      layout: "dense" or "top-k".
      orientation: the orientation the file was read in (`ORIENTATIONS`).
      key: the array (or "index+value" pair) read; "" for an `.npy`.
    """

    attribution: Attribution
    layout: str
    orientation: str
    key: str


def _dense(matrix: np.ndarray, source: str, key: str, num_train, num_test, orientation):
    if matrix.ndim != 2:
        raise InputFileError(f"{source}: the attribution must be 2-D, got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.number) or np.issubdtype(
        matrix.dtype, np.complexfloating
    ):
        raise InputFileError(f"{source}: the attribution is not real numbers ({matrix.dtype})")
    ours, traks = (num_test, num_train), (num_train, num_test)
    if orientation is None:
        if matrix.shape == ours == traks:
            raise InputFileError(
                f"{source}: a square {matrix.shape} attribution is ambiguous; "
                f"give --orientation={TEST_BY_TRAIN} or {TRAIN_BY_TEST}"
            )
        orientation = TEST_BY_TRAIN if matrix.shape == ours else TRAIN_BY_TEST
    expected = ours if orientation == TEST_BY_TRAIN else traks
    if matrix.shape != expected:
        raise InputFileError(
            f"{source}: attribution of shape {matrix.shape} does not fit this experiment "
            f"({num_test} test x {num_train} training examples, as [n_test, n_train] or "
            f"TRAK's [n_train, n_test])"
        )
    tau = matrix.astype(np.float32, copy=False)
    if orientation == TRAIN_BY_TEST:
        tau = np.ascontiguousarray(tau.T)
    if not np.all(np.isfinite(tau)):
        raise InputFileError(f"{source}: the attribution has NaN or infinite values")
    return LoadedAttribution(tau, "dense", orientation, key)


def _sparse(index: np.ndarray, value: np.ndarray, source: str, key: str, num_train, num_test):
    if index.ndim != 2 or index.shape != value.shape or not np.issubdtype(index.dtype, np.integer):
        raise InputFileError(
            f"{source}: top-k index {index.shape} ({index.dtype}) and value {value.shape} "
            "must be integer and float arrays of one shape [n_test, k]"
        )
    if index.shape[0] != num_test:
        raise InputFileError(
            f"{source}: top-k attribution for {index.shape[0]} test examples does not fit "
            f"this experiment ({num_test} test examples)"
        )
    index = index.astype(np.int64)
    padding = index == -1  # fewer than k defined (our scores files): contributes nothing
    if np.any((index < -1) | (index >= num_train)):
        raise InputFileError(
            f"{source}: top-k index outside the {num_train} training examples of this experiment"
        )
    value = value.astype(np.float32)
    if not np.all(np.isfinite(value[~padding])):
        raise InputFileError(f"{source}: the attribution has NaN or infinite values")
    index[padding], value[padding] = 0, 0.0
    sparse = SparseAttribution(index, value, num_train)
    return LoadedAttribution(sparse, "top-k", TEST_BY_TRAIN, key)


def load_attribution(
    path: str | os.PathLike,
    num_train: int,
    num_test: int,
    orientation: str | None = None,
) -> LoadedAttribution:
    """An attribution read from `path` and checked against the experiment's split sizes.

    Args:
      path: `.npy` (dense) or `.npz` (top-k keys, `influence`, or its one array).
      num_train, num_test: the experiment's full split sizes.
      orientation: `TEST_BY_TRAIN` or `TRAIN_BY_TEST` for a dense file; None reads it
        from the shape, and refuses a square one.

    Returns:
      The attribution as [n_test, n_train], with the layout and orientation read.

    Raises:
      InputFileError: one line naming the file: unreadable, ambiguous or wrong shape,
        NaN or infinite values, indices out of range, or no attribution key.
    """
    if orientation is not None and orientation not in ORIENTATIONS:
        raise InputFileError(f"{path}: unknown orientation {orientation!r}; use {ORIENTATIONS}")
    source = os.fspath(path)
    arrays = load_npz(path, error=InputFileError, what="an attribution file")
    for index_key, value_key in _SPARSE_KEYS:
        if index_key in arrays and value_key in arrays:
            key = f"{index_key}+{value_key}"
            return _sparse(arrays[index_key], arrays[value_key], source, key, num_train, num_test)
    two_d = [key for key, array in arrays.items() if np.ndim(array) == 2]
    if INFLUENCE in arrays:
        key = INFLUENCE
    elif len(two_d) == 1:
        key = two_d[0]
    else:
        raise InputFileError(
            f"{source}: no attribution found: expected one 2-D array, `{INFLUENCE}`, "
            f"`{INFLUENCE_TOPK_INDEX}`+`{INFLUENCE_TOPK_VALUE}` or `index`+`value`; "
            f"found {sorted(arrays)}"
        )
    return _dense(arrays[key], source, key, num_train, num_test, orientation)
