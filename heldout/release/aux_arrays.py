"""Load, validate and align one run's `aux_arrays.npz`.

The release stores each run's evaluation in its own shuffled orders: `correctness_<split>`
is aligned with `index_<split>`, and `index_*` are positions in the full split. Every score
needs these arrays in *index order*, so this module checks them once, strictly, and hands
out index-order views. Files come from the internet: they are never unpickled.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from heldout._core.atomic import write_npz_atomic
from heldout._core.npz import load_npz
from heldout._core.npz_direct_read import read_stored_npz
from heldout.errors import AuxArraysError  # noqa: F401 - re-exported

CORRECTNESS_KEYS = ("correctness_train", "correctness_removed", "correctness_test")
INDEX_KEYS = ("index_train", "index_removed", "index_test")
REQUIRED_KEYS = CORRECTNESS_KEYS + INDEX_KEYS + ("subsample_idx",)


@dataclasses.dataclass(frozen=True)
class _IndexOrder:
    """A run's results in index order, built once (by `validate`, or on first use)."""

    train_mask: np.ndarray  # bool [N], True where the run trained on the example
    train_correct: np.ndarray  # bool [N]
    test_correct: np.ndarray  # bool [N_test]


@dataclasses.dataclass(frozen=True)
class AuxArrays:
    """The seven arrays of one run, validated; correctness as bool, indices as int64.

    The index-order views (`train_mask`, `train_correctness`, `test_correctness`) come out
    of validation for free and are kept: every score asks for them, some several times.
    They are read-only arrays shared between calls; copy one before changing it.
    """

    correctness_train: np.ndarray
    correctness_removed: np.ndarray
    correctness_test: np.ndarray
    index_train: np.ndarray
    index_removed: np.ndarray
    index_test: np.ndarray
    subsample_idx: np.ndarray
    source: str = "<memory>"
    # init=False: `dataclasses.replace` with new arrays must not carry the old views along.
    _index_order: _IndexOrder | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def num_train(self) -> int:
        """Size of the full training split (trained on + held out)."""
        return int(self.index_train.size + self.index_removed.size)

    @property
    def num_test(self) -> int:
        return int(self.index_test.size)

    def train_mask(self) -> np.ndarray:
        """bool[num_train] in index order: True where this run trained on the example."""
        return self._views().train_mask

    def train_correctness(self) -> np.ndarray:
        """bool[num_train]: correctness on the full training split, in index order."""
        return self._views().train_correct

    def test_correctness(self) -> np.ndarray:
        """bool[num_test]: correctness on the test split, in index order."""
        return self._views().test_correct

    def as_dict(self) -> dict[str, np.ndarray]:
        return {key: getattr(self, key) for key in REQUIRED_KEYS}

    def _views(self) -> _IndexOrder:
        if self._index_order is None:  # built directly, not validated: scatter as given
            mask = np.zeros(self.num_train, dtype=bool)
            mask[self.index_train] = True
            correct = np.empty(self.num_train, dtype=bool)
            correct[self.index_train] = self.correctness_train
            correct[self.index_removed] = self.correctness_removed
            test = np.empty(self.num_test, dtype=bool)
            test[self.index_test] = self.correctness_test
            self._set_views(_IndexOrder(mask, correct, test))
        return self._index_order

    def _set_views(self, views: _IndexOrder) -> None:
        for array in (views.train_mask, views.train_correct, views.test_correct):
            array.flags.writeable = False
        object.__setattr__(self, "_index_order", views)


_INT64 = np.dtype(np.int64)
_INT64_MAX = np.iinfo(np.int64).max


def _as_bool(name: str, values: np.ndarray, source: str) -> np.ndarray:
    if values.ndim != 1:
        raise AuxArraysError(f"{source}: {name} must be 1-D, got shape {values.shape}")
    if values.dtype == np.bool_:
        return values
    if np.issubdtype(values.dtype, np.integer):
        if values.size and (values.min() < 0 or values.max() > 1):
            raise AuxArraysError(
                f"{source}: {name} holds integers other than 0 and 1 "
                f"(range {values.min()}..{values.max()})"
            )
        return values.astype(bool)
    raise AuxArraysError(
        f"{source}: {name} has dtype {values.dtype}; expected bool or 0/1 integers"
    )


def _as_index(name: str, values: np.ndarray, source: str) -> np.ndarray:
    if values.ndim != 1:
        raise AuxArraysError(f"{source}: {name} must be 1-D, got shape {values.shape}")
    if values.dtype == _INT64:  # the usual case, without issubdtype's cost
        return values
    if not np.issubdtype(values.dtype, np.integer):
        raise AuxArraysError(f"{source}: {name} has dtype {values.dtype}; expected integers")
    if values.dtype.kind == "u" and values.size and values.max() > _INT64_MAX:
        # Said before the cast to int64, which would wrap it to a negative number.
        raise AuxArraysError(
            f"{source}: {name} is not a list of example positions: it holds {values.max()}"
        )
    return values.astype(np.int64, copy=False)


def _check_range(name: str, parts: tuple[np.ndarray, ...], size: int, source: str) -> None:
    """Raises unless every value lies in 0..size-1 (before indexing: -1 would wrap)."""
    for part in parts:
        if part.size and (part.min() < 0 or part.max() >= size):
            low = min(int(p.min()) for p in parts if p.size)
            high = max(int(p.max()) for p in parts if p.size)
            raise AuxArraysError(
                f"{source}: {name} is not a permutation of 0..{size - 1}: "
                f"values range {low}..{high}"
            )


def _permutation_error(name: str, parts: tuple[np.ndarray, ...], size: int, source: str):
    """The error for in-range values that miss some of 0..size-1 (only built on failure)."""
    counts = np.bincount(np.concatenate(parts), minlength=size)
    duplicated = np.flatnonzero(counts > 1)[:5].tolist()
    missing = np.flatnonzero(counts == 0)[:5].tolist()
    return AuxArraysError(
        f"{source}: {name} is not a permutation of 0..{size - 1}: "
        f"repeated {duplicated}, missing {missing} (first few shown)"
    )


# One byte per training example records what the run's files say about it. Every check
# and both index-order views then take a few linear passes: no sorting, no counting array.
_CORRECT, _TRAINED, _REMOVED, _SUBSAMPLED = 1, 2, 4, 8


def _train_split(typed: dict[str, np.ndarray], source: str) -> tuple[np.ndarray, np.ndarray]:
    """(train_mask, train_correct) in index order, checking every rule of the training split.

    index_train and index_removed together hold N = |train| + |removed| entries; when each
    of the N slots gets written, none was written twice (pigeonhole): a permutation. Then
    subsample_idx, as long as index_train, marks only trained slots and all of them exactly
    when it holds the same examples.
    """
    index_train, index_removed = typed["index_train"], typed["index_removed"]
    size = index_train.size + index_removed.size
    name = "index_train ∪ index_removed"
    _check_range(name, (index_train, index_removed), size, source)
    slot = np.zeros(size, dtype=np.uint8)
    slot[index_train] = np.add(typed["correctness_train"], _TRAINED, dtype=np.uint8)
    slot[index_removed] = np.add(typed["correctness_removed"], _REMOVED, dtype=np.uint8)
    if np.count_nonzero(slot) != size:
        raise _permutation_error(name, (index_train, index_removed), size, source)

    subsample = typed["subsample_idx"]
    same = subsample.size == index_train.size
    if same and subsample.size:
        same = subsample.min() >= 0 and subsample.max() < size
    if same:
        slot[subsample] |= _SUBSAMPLED
        # Trained and subsampled marks must agree everywhere: shift one onto the other.
        same = not np.any(np.bitwise_and(np.bitwise_xor(slot >> 2, slot), _TRAINED))
    if not same:
        raise AuxArraysError(
            f"{source}: subsample_idx ({subsample.size} entries) does not hold the same "
            f"examples as index_train ({index_train.size} entries)"
        )
    correct = np.bitwise_and(slot, _CORRECT).view(np.bool_)  # 0/1 bytes: proper bools
    np.right_shift(slot, 1, out=slot)
    np.bitwise_and(slot, 1, out=slot)
    return slot.view(np.bool_), correct


def _test_split(typed: dict[str, np.ndarray], source: str) -> np.ndarray:
    """test_correct in index order, checking that index_test is a permutation."""
    index_test = typed["index_test"]
    size = index_test.size
    _check_range("index_test", (index_test,), size, source)
    slot = np.zeros(size, dtype=np.uint8)
    slot[index_test] = np.add(typed["correctness_test"], 1, dtype=np.uint8)  # 1 or 2
    if np.count_nonzero(slot) != size:
        raise _permutation_error("index_test", (index_test,), size, source)
    np.right_shift(slot, 1, out=slot)
    return slot.view(np.bool_)


# heldout.release.aux_kernels once `use_compiled_checks` ran: the same rules in one compiled pass.
_compiled = None


def use_compiled_checks() -> None:
    """Validates with numba-compiled single-pass checks from now on in this process.

    The rules and the errors stay the same: the compiled checks only accept, and a run
    they reject goes through the numpy checks, which name what is wrong. Called by the
    popcount backend, which loads numba anyway; without it the numpy checks serve.
    """
    global _compiled
    from heldout.release import aux_kernels

    aux_kernels.warm_up()
    _compiled = aux_kernels


def validate(arrays: dict[str, np.ndarray], source: str = "<memory>") -> AuxArrays:
    """Checks every rule of the release format and returns the typed arrays.

    Rules: all keys present and no others; correctness bool (or 0/1 ints) and as long as
    its index array; index_train ∪ index_removed a permutation of 0..N-1; index_test a
    permutation of 0..N_test-1; subsample_idx the same set as index_train. Each check is
    linear in N (no sorting); the arrays are taken as they are, not copied, unless their
    dtype must change.
    """
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    extra = sorted(set(arrays) - set(REQUIRED_KEYS))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if extra:
            parts.append(f"unexpected keys {extra}")
        raise AuxArraysError(f"{source}: {'; '.join(parts)} (expected {list(REQUIRED_KEYS)})")

    typed = {key: _as_bool(key, np.asarray(arrays[key]), source) for key in CORRECTNESS_KEYS}
    for key in INDEX_KEYS + ("subsample_idx",):
        typed[key] = _as_index(key, np.asarray(arrays[key]), source)

    for split in ("train", "removed", "test"):
        correct, index = typed[f"correctness_{split}"], typed[f"index_{split}"]
        if correct.size != index.size:
            raise AuxArraysError(
                f"{source}: correctness_{split} has {correct.size} entries but "
                f"index_{split} has {index.size}"
            )

    compiled = _compiled.index_order(typed) if _compiled is not None else None
    if compiled is not None:
        train_mask, train_correct, test_correct = compiled
    else:  # the numpy checks, which also say what is wrong when a rule fails
        train_mask, train_correct = _train_split(typed, source)
        test_correct = _test_split(typed, source)
    aux = AuxArrays(**typed, source=source)
    aux._set_views(_IndexOrder(train_mask, train_correct, test_correct))
    return aux


def load_aux_arrays(path: str | os.PathLike, max_bytes: int | None = None) -> AuxArrays:
    """Reads and validates one `aux_arrays.npz` without ever unpickling.

    Args:
      path: the file.
      max_bytes: the most bytes its arrays may declare (from the split sizes, e.g.
        `heldout.release.reading.aux_load_bound`); None: the memory available. A file
        declaring more is refused before anything is allocated or inflated.

    Returns:
      The validated arrays (index and correctness of every split, the run's subset).

    Raises:
      AuxArraysError: the file is missing, unreadable, pickled, declares more than
        `max_bytes` or breaks a format rule; the message starts with the file.
    """
    # The direct reader handles the usual files (one read per array, no copies); anything
    # else, including every broken file, goes through the one loader, which names the fault.
    arrays = read_stored_npz(path, max_bytes)
    if arrays is None:
        arrays = load_npz(
            path, error=AuxArraysError, what="an aux_arrays.npz file", max_bytes=max_bytes
        )
    return validate(arrays, str(path))


def save_aux_arrays(path: str | os.PathLike, aux: AuxArrays) -> None:
    """Writes the release format atomically: a temporary file renamed into place."""
    write_npz_atomic(path, aux.as_dict())


def aux_from_predictions(
    train_mask: np.ndarray,
    correct_train_full: np.ndarray,
    correct_test: np.ndarray,
    rng: np.random.Generator | None = None,
) -> AuxArrays:
    """Builds a run's arrays from index-order results, the way the release lays them out.

    With `rng`, each split's evaluation order is shuffled as in the released files, so
    downstream code cannot silently depend on index order.
    """
    train_mask = np.asarray(train_mask, dtype=bool)
    correct_train_full = np.asarray(correct_train_full, dtype=bool)
    correct_test = np.asarray(correct_test, dtype=bool)
    if correct_train_full.shape != train_mask.shape:
        raise ValueError(
            f"train_mask has shape {train_mask.shape} but correct_train_full has "
            f"{correct_train_full.shape}; both must cover the full training split"
        )
    index_train = np.flatnonzero(train_mask).astype(np.int64)
    index_removed = np.flatnonzero(~train_mask).astype(np.int64)
    index_test = np.arange(correct_test.size, dtype=np.int64)
    subsample_idx = index_train.copy()
    if rng is not None:
        index_train = rng.permutation(index_train)
        index_removed = rng.permutation(index_removed)
        index_test = rng.permutation(index_test)
        subsample_idx = rng.permutation(subsample_idx)
    aux = AuxArrays(
        correctness_train=correct_train_full[index_train],
        correctness_removed=correct_train_full[index_removed],
        correctness_test=correct_test[index_test],
        index_train=index_train,
        index_removed=index_removed,
        index_test=index_test,
        subsample_idx=subsample_idx,
    )
    # The index-order views are what the caller gave (copied: the caller keeps its arrays).
    aux._set_views(_IndexOrder(train_mask.copy(), correct_train_full.copy(), correct_test.copy()))
    return aux
