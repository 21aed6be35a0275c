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

from heldout.errors import AuxArraysError  # noqa: F401 - re-exported
from heldout.io import load_npz, write_npz_atomic

CORRECTNESS_KEYS = ("correctness_train", "correctness_removed", "correctness_test")
INDEX_KEYS = ("index_train", "index_removed", "index_test")
REQUIRED_KEYS = CORRECTNESS_KEYS + INDEX_KEYS + ("subsample_idx",)


@dataclasses.dataclass(frozen=True)
class AuxArrays:
    """The seven arrays of one run, validated; correctness as bool, indices as int64."""

    correctness_train: np.ndarray
    correctness_removed: np.ndarray
    correctness_test: np.ndarray
    index_train: np.ndarray
    index_removed: np.ndarray
    index_test: np.ndarray
    subsample_idx: np.ndarray
    source: str = "<memory>"

    @property
    def num_train(self) -> int:
        """Size of the full training split (trained on + held out)."""
        return int(self.index_train.size + self.index_removed.size)

    @property
    def num_test(self) -> int:
        return int(self.index_test.size)

    def train_mask(self) -> np.ndarray:
        """bool[num_train] in index order: True where this run trained on the example."""
        mask = np.zeros(self.num_train, dtype=bool)
        mask[self.index_train] = True
        return mask

    def train_correctness(self) -> np.ndarray:
        """bool[num_train]: correctness on the full training split, in index order."""
        correct = np.empty(self.num_train, dtype=bool)
        correct[self.index_train] = self.correctness_train
        correct[self.index_removed] = self.correctness_removed
        return correct

    def test_correctness(self) -> np.ndarray:
        """bool[num_test]: correctness on the test split, in index order."""
        correct = np.empty(self.num_test, dtype=bool)
        correct[self.index_test] = self.correctness_test
        return correct

    def as_dict(self) -> dict[str, np.ndarray]:
        return {key: getattr(self, key) for key in REQUIRED_KEYS}


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
    if not np.issubdtype(values.dtype, np.integer):
        raise AuxArraysError(f"{source}: {name} has dtype {values.dtype}; expected integers")
    return values.astype(np.int64, copy=False)


def _check_permutation(name: str, values: np.ndarray, size: int, source: str) -> None:
    """Raises unless `values` holds each of 0..size-1 exactly once."""
    if values.size != size:
        raise AuxArraysError(f"{source}: {name} has {values.size} entries; expected {size}")
    if size == 0:
        return
    if values.min() < 0 or values.max() >= size:
        raise AuxArraysError(
            f"{source}: {name} is not a permutation of 0..{size - 1}: "
            f"values range {values.min()}..{values.max()}"
        )
    counts = np.bincount(values, minlength=size)
    if not np.all(counts == 1):
        duplicated = np.flatnonzero(counts > 1)[:5].tolist()
        missing = np.flatnonzero(counts == 0)[:5].tolist()
        raise AuxArraysError(
            f"{source}: {name} is not a permutation of 0..{size - 1}: "
            f"repeated {duplicated}, missing {missing} (first few shown)"
        )


def validate(arrays: dict[str, np.ndarray], source: str = "<memory>") -> AuxArrays:
    """Checks every rule of the release format and returns the typed arrays.

    Rules: all keys present and no others; correctness bool (or 0/1 ints) and as long as
    its index array; index_train ∪ index_removed a permutation of 0..N-1; index_test a
    permutation of 0..N_test-1; subsample_idx the same set as index_train.
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

    train_and_removed = np.concatenate([typed["index_train"], typed["index_removed"]])
    _check_permutation(
        "index_train ∪ index_removed", train_and_removed, train_and_removed.size, source
    )
    _check_permutation("index_test", typed["index_test"], typed["index_test"].size, source)

    subsample = typed["subsample_idx"]
    if subsample.size != typed["index_train"].size or not np.array_equal(
        np.sort(subsample), np.sort(typed["index_train"])
    ):
        raise AuxArraysError(
            f"{source}: subsample_idx ({subsample.size} entries) does not hold the same "
            f"examples as index_train ({typed['index_train'].size} entries)"
        )
    return AuxArrays(**typed, source=source)


def load_aux_arrays(path: str | os.PathLike) -> AuxArrays:
    """Reads and validates one `aux_arrays.npz` without ever unpickling.

    Raises:
      AuxArraysError: the file is missing, unreadable, pickled or breaks a format rule;
        the message starts with the file.
    """
    arrays = load_npz(path, error=AuxArraysError, what="an aux_arrays.npz file")
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
    return AuxArrays(
        correctness_train=correct_train_full[index_train],
        correctness_removed=correct_train_full[index_removed],
        correctness_test=correct_test[index_test],
        index_train=index_train,
        index_removed=index_removed,
        index_test=index_test,
        subsample_idx=subsample_idx,
    )
