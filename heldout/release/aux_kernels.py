"""The aux_arrays format checks as single compiled passes (numba), for the popcount backend.

`heldout.release.aux_arrays.validate` checks a run in a few linear numpy passes, and its
scatters through index arrays cost as much as the scoring itself per run. These kernels
apply the same rules in one pass per split and release the GIL, so reader threads check
runs in parallel. They only accept: when a rule fails they return False and the numpy checks run
to say precisely what is wrong. Used once numba is loaded anyway (by the popcount backend,
`heldout.release.aux_arrays.use_compiled_checks`); a process that never loads numba never pays
for it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from heldout._core.numba_start import load_numba_arrays

load_numba_arrays()  # before the first compile would import it with all of scipy.linalg


@njit(nogil=True, cache=True, boundscheck=False)
def _scatter(index, values, slot, mark, correct):
    """correct[index[i]] = values[i], marking each index's slot; False if an index is out
    of 0..slot.size-1 or its slot is marked already (by this split or another)."""
    size = slot.size
    for i in range(index.size):
        j = index[i]
        if j < 0 or j >= size or slot[j] != 0:
            return False
        slot[j] = mark
        correct[j] = values[i]
    return True


@njit(nogil=True, cache=True, boundscheck=False)
def _train_views(
    index_train, index_removed, correct_train, correct_removed, subsample, mask, correct
):
    """Fills mask and correct (bool [N]) in index order; False if any rule fails.

    Rules: the N = |train| + |removed| indices are in 0..N-1 and none repeats (so they
    are a permutation), and subsample_idx (as long as index_train) marks each trained
    example once (so it holds the same set).
    """
    size = mask.size
    slot = np.zeros(size, np.uint8)  # 0 unseen, 1 trained, 2 held out, 3 trained + subsampled
    if not _scatter(index_train, correct_train, slot, 1, correct):
        return False
    if not _scatter(index_removed, correct_removed, slot, 2, correct):
        return False
    for i in range(subsample.size):
        j = subsample[i]
        if j < 0 or j >= size or slot[j] != 1:
            return False
        slot[j] = 3
    for j in range(size):
        mask[j] = slot[j] == 3
    return True


@njit(nogil=True, cache=True, boundscheck=False)
def _test_views(index_test, correct_test, correct):
    """Fills correct (bool [N_test]) in index order; False unless index_test is a permutation."""
    seen = np.zeros(correct.size, np.uint8)
    return _scatter(index_test, correct_test, seen, 1, correct)


def index_order(typed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(train_mask, train_correct, test_correct) of typed arrays; None if a rule fails.

    Args:
      typed: the seven arrays, indices int64 and correctness bool, each correctness as
        long as its index array (checked before).
    """
    index_train = typed["index_train"]
    num_train = index_train.size + typed["index_removed"].size
    if typed["subsample_idx"].size != index_train.size:
        return None
    mask = np.empty(num_train, np.bool_)
    correct = np.empty(num_train, np.bool_)
    test = np.empty(typed["index_test"].size, np.bool_)
    if not _train_views(
        index_train,
        typed["index_removed"],
        typed["correctness_train"],
        typed["correctness_removed"],
        typed["subsample_idx"],
        mask,
        correct,
    ):
        return None
    if not _test_views(typed["index_test"], typed["correctness_test"], test):
        return None
    return mask, correct, test


def warm_up() -> None:
    """Compiles the kernels, or loads them from numba's cache."""
    index = np.zeros(1, np.int64)
    flag = np.zeros(1, np.bool_)
    arrays = dict(
        index_train=index,
        index_removed=index[:0],
        index_test=index,
        subsample_idx=index,
        correctness_train=flag,
        correctness_removed=flag[:0],
        correctness_test=flag,
    )
    index_order(arrays)
