"""The published score files of the papers' websites, read and written, validated.

Formats (`../shared/spec/release.md`):
- C-scores: `.npz` with `labels` [N] int and `scores` [N] float (CIFAR-10/100, original
  order); ImageNet's adds `filenames` [N], an object array numpy can only store by
  pickling (read only when the caller opts in: unpickling a file from elsewhere can run
  code); MNIST's is a bare `.npy` of scores [60 000] in TFDS order.
- High-influence pairs: `.npz` with `tr_idx`, `tt_idx` (int), `infl`, `mem` (float), one
  entry per (training, test) pair, with influence and the training example's memorization
  at or above the thresholds in the file name (`..._infl0.15_mem0.25.npz`).
- Class-wise influence: per class K, `infl_matrix_class{K}` [n_train_K, n_test_K] (rows
  are TRAINING examples), `tr_classidx_{K}` and `tt_classidx_{K}` (the positions of those
  rows and columns in the full splits), plus `tr_labels`, `tt_labels` and `tr_mem`
  (memorization of every training example). ImageNet's is published as `.bin` parts of
  one `.npz`, to be concatenated in order.

Our writers produce the same keys, plus `provenance` (a JSON string: what the file was
computed from), which the published readers of these files ignore. Files we write hold
no pickles (file names are stored as a fixed-width unicode array). Nothing here imports
TensorFlow. Every problem is a `PublishedFileError` whose message starts with the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from heldout._core.atomic import atomic_open, write_npz_atomic
from heldout._core.npz import load_npz
from heldout._core.system import check_free_space
from heldout.errors import CompareError, PublishedFileError

CSCORE_KEYS = ("labels", "scores")
PAIR_KEYS = ("tr_idx", "tt_idx", "infl", "mem")
CLASSWISE_KEYS = ("tr_labels", "tt_labels", "tr_mem")
PROVENANCE_KEY = "provenance"
# The thresholds of the published pair files (Feldman & Zhang 2020, Section 4): pairs whose
# influence is at least 0.15 and whose training example's memorization is at least 0.25.
DEFAULT_MIN_INFLUENCE = 0.15
DEFAULT_MIN_MEMORIZATION = 0.25

_SHOW = 5  # offending values listed in an error message
_THRESHOLDS_IN_NAME = re.compile(r"infl([0-9.]+?)_mem([0-9.]+?)(?:\.npz)?$")
_MATRIX_KEY = re.compile(r"^infl_matrix_class(\d+)$", re.ASCII)
_TRAIN_INDEX_KEY = re.compile(r"^tr_classidx_(\d+)$", re.ASCII)
_TEST_INDEX_KEY = re.compile(r"^tt_classidx_(\d+)$", re.ASCII)


# ------------------------------------------------------------------------------ helpers


def _is_real(values: np.ndarray) -> bool:
    """Integer, float or bool: what a score or influence can be (not str, complex, object)."""
    return (
        values.dtype == np.bool_
        or np.issubdtype(values.dtype, np.integer)
        or np.issubdtype(values.dtype, np.floating)
    )


def _real_vector(values: np.ndarray, what: str, source: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or not _is_real(values):
        raise PublishedFileError(
            f"{source}: {what} must be a 1-D array of numbers, got {values.dtype} {values.shape}"
        )
    return values.astype(np.float64)


def _index_vector(values: np.ndarray, what: str, source: str, size: int | None = None):
    """int64 [n], non-negative and (when `size` is given) below `size`.

    Negative positions would silently wrap around in numpy indexing and float positions
    would be truncated: both mean the wrong array, and are refused with examples.
    """
    values = np.asarray(values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise PublishedFileError(
            f"{source}: {what} must be a 1-D integer array, got {values.dtype} {values.shape}"
        )
    bad = np.flatnonzero((values < 0) | (values >= size if size is not None else False))
    if bad.size:
        shown = values[bad[:_SHOW]].tolist()
        limit = f"0..{size - 1}" if size is not None else "0 or more"
        raise PublishedFileError(
            f"{source}: {what} holds {bad.size} position(s) outside {limit}, e.g. {shown} "
            f"at entr{'y' if bad.size == 1 else 'ies'} {bad[:_SHOW].tolist()}"
            f"{' ...' if bad.size > _SHOW else ''}"
        )
    return values.astype(np.int64)


def _provenance_of(arrays: dict[str, np.ndarray], source: str) -> dict | None:
    """The `provenance` JSON our writers add (None in the published files)."""
    if PROVENANCE_KEY not in arrays:
        return None
    raw = arrays[PROVENANCE_KEY]
    try:
        value = json.loads(str(raw.item() if raw.ndim == 0 else raw))
    except (ValueError, TypeError) as error:
        raise PublishedFileError(f"{source}: `provenance` is not JSON ({error})") from None
    if not isinstance(value, dict):
        raise PublishedFileError(f"{source}: `provenance` must be a JSON object")
    return value


def _provenance_array(provenance: dict | None) -> dict[str, np.ndarray]:
    if provenance is None:
        return {}
    return {PROVENANCE_KEY: np.asarray(json.dumps(provenance, sort_keys=True, allow_nan=False))}


def pickled_members(path: str | os.PathLike) -> list[str]:
    """Names of the arrays in an `.npz` stored as pickled objects, from their headers alone.

    Lets a loader say which array needs unpickling (and why), before anything is
    unpickled. An unreadable file gives [] (the full read reports what is wrong with it).
    """
    names = []
    try:
        with zipfile.ZipFile(path) as npz:
            for member in npz.namelist():
                with npz.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    _, _, dtype = header(f)
                if dtype.hasobject:
                    names.append(member.removesuffix(".npy"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return []
    return names


def _load(path: str | os.PathLike, what: str, keys=None, allow_pickle: bool = False):
    """`heldout._core.npz.load_npz`, with a refusal that names the pickled arrays and the opt-in."""
    source = os.fspath(path)
    if not allow_pickle:
        pickled = pickled_members(source) if str(source).endswith(".npz") else []
        if pickled:
            verb = "is an object array" if len(pickled) == 1 else "are object arrays"
            raise PublishedFileError(
                f"{source}: {', '.join(pickled)} {verb} "
                "that numpy can only read by unpickling, which can run code from the file; "
                "pass --allow_pickle (allow_pickle=True) only for a file you trust, e.g. "
                "the one downloaded from the paper's website"
            )
    return load_npz(
        source, keys=keys, allow_pickle=allow_pickle, error=PublishedFileError, what=what
    )


# ------------------------------------------------------------------------------ C-scores


@dataclasses.dataclass(frozen=True)
class CScoreFile:
    """A published (or exported) C-score file.

    Attributes:
      scores: float64 [N], the integral C-scores.
      labels: int64 [N], or None (MNIST's `.npy` has none).
      filenames: str [N] (ImageNet's file), or None.
      source: the file.
      provenance: what an exported file was computed from; None for the published ones.
    """

    scores: np.ndarray
    labels: np.ndarray | None
    source: str = "<memory>"
    filenames: np.ndarray | None = None
    provenance: dict | None = None

    def __post_init__(self):
        scores = _real_vector(self.scores, "scores", self.source)
        object.__setattr__(self, "scores", scores)
        if self.labels is not None:
            labels = _index_vector(self.labels, "labels", self.source)
            if labels.shape != scores.shape:
                raise PublishedFileError(
                    f"{self.source}: labels must be integers shaped like scores "
                    f"{scores.shape}, got {labels.shape}"
                )
            object.__setattr__(self, "labels", labels)
        if self.filenames is not None:
            object.__setattr__(
                self, "filenames", _as_names(self.filenames, scores.shape, self.source)
            )

    def __len__(self) -> int:
        return int(self.scores.size)


# Kept for the callers of `heldout.datasets.order.PublishedScores`.
PublishedScores = CScoreFile


def _as_names(values, shape: tuple[int, ...], source: str) -> np.ndarray:
    """File names as a unicode array (from str, bytes or an unpickled object array)."""
    values = np.asarray(values)
    if values.shape != shape:
        raise PublishedFileError(f"{source}: filenames must be shaped {shape}, got {values.shape}")
    if values.dtype.kind == "U":
        return values
    items = values.tolist()
    if not all(isinstance(item, (str, bytes)) for item in items):
        kinds = sorted({type(item).__name__ for item in items})
        raise PublishedFileError(f"{source}: filenames must be strings, found {kinds}")
    return np.array([i.decode() if isinstance(i, bytes) else i for i in items], dtype=str)


def load_cscores(path: str | os.PathLike, allow_pickle: bool = False) -> CScoreFile:
    """Reads a C-score file: `.npz` with `scores` (and `labels`, `filenames`) or a `.npy`.

    Args:
      path: `cifar10-cscores-orig-order.npz`, `mnist-cscores.npy`,
        `imagenet-cscores-with-filename.npz`, or one written by `write_cscores` or
        `tools/map_order.py`.
      allow_pickle: needed for ImageNet's file only, whose `filenames` numpy stores as
        pickled Python strings. Unpickling runs code from the file: opt in only for a
        file you trust.

    Returns:
      The scores, checked (see `CScoreFile`).

    Raises:
      PublishedFileError: missing, unreadable or pickled (without `allow_pickle`) file; no
        `scores`; scores that are not a vector of numbers; labels or file names of another
        length. The message starts with the file.
    """
    source = os.fspath(path)
    arrays = _load(source, "a C-score file (.npz or .npy)", allow_pickle=allow_pickle)
    if "" in arrays:  # a .npy: the scores alone (MNIST's published file)
        return CScoreFile(arrays[""], None, source)
    if "scores" not in arrays:
        raise PublishedFileError(f"{source}: no `scores` array (it has {sorted(arrays)})")
    return CScoreFile(
        scores=arrays["scores"],
        labels=arrays.get("labels"),
        source=source,
        filenames=arrays.get("filenames"),
        provenance=_provenance_of(arrays, source),
    )


def load_published_scores(path: str | os.PathLike) -> CScoreFile:
    """`load_cscores` without pickles (the name `tools/map_order.py` has always used)."""
    return load_cscores(path)


def write_cscores(
    path: str | os.PathLike,
    scores: np.ndarray,
    labels: np.ndarray | None,
    filenames: Sequence[str] | None = None,
    provenance: dict | None = None,
) -> None:
    """Writes C-scores in the published format, atomically (`heldout.io`).

    An `.npz` gets `labels` (int64), `scores` (float64), `filenames` when given (as a
    unicode array: no pickle) and `provenance`. A `.npy` path gets the scores alone, as
    MNIST's published file (then labels are not written and filenames are refused).

    Raises:
      PublishedFileError: shapes or dtypes that do not fit the format.
    """
    path = Path(path)
    record = CScoreFile(scores, labels, str(path), filenames, provenance)
    if path.suffix == ".npy":
        if filenames is not None:
            raise PublishedFileError(f"{path}: a .npy holds the scores only; write an .npz")
        with atomic_open(path, "wb") as f:
            np.save(f, record.scores, allow_pickle=False)
        return
    if record.labels is None:
        raise PublishedFileError(f"{path}: the .npz format has `labels`; give them")
    arrays = {"labels": record.labels, "scores": record.scores}
    if record.filenames is not None:
        arrays["filenames"] = record.filenames
    write_npz_atomic(path, {**arrays, **_provenance_array(provenance)})


# --------------------------------------------------------------------- influence pairs


@dataclasses.dataclass(frozen=True)
class InfluencePairs:
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
                shown = values[negative[:_SHOW]].tolist()
                raise PublishedFileError(
                    f"{self.source}: {key} holds {negative.size} negative index(es), e.g. "
                    f"{shown} at pair(s) {negative[:_SHOW].tolist()}"
                    f"{' ...' if negative.size > _SHOW else ''}; indices are positions "
                    "0..N-1 in the split"
                )
        for key in ("infl", "mem"):
            if not _is_real(arrays[key]):
                raise PublishedFileError(
                    f"{self.source}: {key} has dtype {arrays[key].dtype}; expected numbers"
                )
        object.__setattr__(self, "train_index", arrays["tr_idx"].astype(np.int64))
        object.__setattr__(self, "test_index", arrays["tt_idx"].astype(np.int64))
        object.__setattr__(self, "influence", arrays["infl"].astype(np.float64))
        object.__setattr__(self, "memorization", arrays["mem"].astype(np.float64))
        keys = self.keys()
        unique, counts = np.unique(keys, return_counts=True)
        if unique.size != keys.size:
            twice = unique[counts > 1][:_SHOW]
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


def load_influence_pairs(path: str | os.PathLike, check_name: bool = True) -> InfluencePairs:
    """Reads a `*_high_infl_pairs_*.npz` (keys tr_idx, tt_idx, infl, mem).

    Args:
      path: the pairs file.
      check_name: when the file name states thresholds (`infl0.15_mem0.25`), refuse a
        file whose pairs do not all meet them (a file renamed or cut wrongly).

    Returns:
      The pairs, checked (see `InfluencePairs`).

    Raises:
      PublishedFileError (a CompareError): the file is missing, unreadable, lacks a key,
        holds indices that are not non-negative integers of one length, repeats a pair,
        or breaks the thresholds of its name; the message starts with the file.
    """
    source = os.fspath(path)
    arrays = _load(source, "a high-influence pairs .npz file", keys=PAIR_KEYS)
    pairs = InfluencePairs(
        train_index=arrays["tr_idx"],
        test_index=arrays["tt_idx"],
        influence=arrays["infl"],
        memorization=arrays["mem"],
        source=source,
        provenance=_provenance_of(arrays, source),
    )
    thresholds = thresholds_in_name(source) if check_name else None
    if thresholds is not None:
        pairs.check_thresholds(*thresholds)
    return pairs


def write_influence_pairs(
    path: str | os.PathLike, pairs: InfluencePairs, provenance: dict | None = None
) -> None:
    """Writes pairs in the published format (int64 indices, float64 values), atomically."""
    arrays = {
        "tr_idx": pairs.train_index,
        "tt_idx": pairs.test_index,
        "infl": pairs.influence,
        "mem": pairs.memorization,
    }
    write_npz_atomic(path, {**arrays, **_provenance_array(provenance)})


def pairs_file_name(prefix: str, min_influence: float, min_memorization: float) -> str:
    """The published naming: `<prefix>_high_infl_pairs_infl0.15_mem0.25.npz`."""
    return f"{prefix}_high_infl_pairs_infl{min_influence:g}_mem{min_memorization:g}.npz"


def _ordered_pairs(train, test, influence, memorization, source, provenance) -> InfluencePairs:
    """Pairs sorted by decreasing influence (then train, test index): reproducible files."""
    order = np.lexsort((test, train, -influence))
    return InfluencePairs(
        train[order], test[order], influence[order], memorization[order], source, provenance
    )


def select_pairs_dense(
    influence: np.ndarray,
    memorization: np.ndarray,
    min_influence: float = DEFAULT_MIN_INFLUENCE,
    min_memorization: float = DEFAULT_MIN_MEMORIZATION,
    provenance: dict | None = None,
) -> InfluencePairs:
    """Pairs with influence >= and memorization >= the thresholds, from a dense matrix.

    Args:
      influence: float [N_test, N_train] (our `influence`, test examples along axis 0).
      memorization: float [N_train]; NaN (undefined) never passes.
      min_influence, min_memorization: the published defaults 0.15 and 0.25.

    Raises:
      CompareError: shapes that do not fit each other.
    """
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
    return _ordered_pairs(
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
) -> tuple[InfluencePairs, int]:
    """Pairs from top-k influence (`influence_topk_index`/`_value` [N_test, k]).

    Returns:
      (pairs, saturated): `saturated` counts the test examples whose k-th value still
      passes the influence threshold, i.e. which may have more qualifying pairs than k
      shows (recompute with a larger k, or dense, when it is not 0).
    """
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
    pairs = _ordered_pairs(
        train.astype(np.int64),
        test.astype(np.int64),
        value[test, slot],
        memorization[train],
        "<selected>",
        provenance,
    )
    return pairs, saturated


# -------------------------------------------------------------- class-wise influence


@dataclasses.dataclass(frozen=True)
class ClassBlock:
    """One class's influence block: rows are its training examples, columns its tests."""

    label: int
    train_index: np.ndarray  # int64 [n_train_K], positions in the training split
    test_index: np.ndarray  # int64 [n_test_K], positions in the test split
    matrix: np.ndarray  # float [n_train_K, n_test_K]


@dataclasses.dataclass(frozen=True)
class ClasswiseInfluence:
    """A class-wise influence file: one block per class plus labels and memorization."""

    train_labels: np.ndarray  # int64 [N_train]
    test_labels: np.ndarray  # int64 [N_test]
    train_memorization: np.ndarray  # float64 [N_train]
    blocks: dict[int, ClassBlock]
    source: str = "<memory>"
    provenance: dict | None = None

    def select_pairs(
        self,
        min_influence: float = DEFAULT_MIN_INFLUENCE,
        min_memorization: float = DEFAULT_MIN_MEMORIZATION,
    ) -> InfluencePairs:
        """The same-class pairs passing both thresholds (a class-wise file has no others)."""
        parts = [[], [], [], []]
        for block in self.blocks.values():
            memorization = self.train_memorization[block.train_index]
            with np.errstate(invalid="ignore"):
                passes = (block.matrix >= min_influence) & (
                    memorization[:, None] >= min_memorization
                )
            rows, columns = np.nonzero(passes)
            parts[0].append(block.train_index[rows])
            parts[1].append(block.test_index[columns])
            parts[2].append(block.matrix[rows, columns].astype(np.float64))
            parts[3].append(memorization[rows])
        arrays = [np.concatenate(p) if p else np.zeros(0) for p in parts]
        return _ordered_pairs(
            arrays[0].astype(np.int64),
            arrays[1].astype(np.int64),
            arrays[2],
            arrays[3],
            self.source,
            self.provenance,
        )


def _class_keys(arrays: dict[str, np.ndarray], source: str) -> list[int]:
    """The classes K of a class-wise file, each with its three arrays present."""
    found = {pattern: set() for pattern in (_MATRIX_KEY, _TRAIN_INDEX_KEY, _TEST_INDEX_KEY)}
    for key in arrays:
        for pattern, classes in found.items():
            match = pattern.match(key)
            if match:
                classes.add(int(match.group(1)))
    matrices, trains, tests = found.values()
    if not matrices:
        raise PublishedFileError(
            f"{source}: no infl_matrix_class<K> arrays (it has {sorted(arrays)[:10]}...); "
            "not a class-wise influence file"
        )
    if not matrices == trains == tests:
        lacking = sorted((matrices | trains | tests) - (matrices & trains & tests))
        raise PublishedFileError(
            f"{source}: classes {lacking[:_SHOW]} lack one of infl_matrix_class<K>, "
            "tr_classidx_<K>, tt_classidx_<K>"
        )
    return sorted(matrices)


def _check_block(
    label: int,
    arrays: dict[str, np.ndarray],
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    source: str,
) -> ClassBlock:
    matrix = np.asarray(arrays[f"infl_matrix_class{label}"])
    train = _index_vector(
        arrays[f"tr_classidx_{label}"], f"tr_classidx_{label}", source, len(train_labels)
    )
    test = _index_vector(
        arrays[f"tt_classidx_{label}"], f"tt_classidx_{label}", source, len(test_labels)
    )
    if matrix.ndim != 2 or not _is_real(matrix) or matrix.shape != (train.size, test.size):
        raise PublishedFileError(
            f"{source}: infl_matrix_class{label} must be a real [n_train_K, n_test_K] = "
            f"[{train.size}, {test.size}] matrix (rows are training examples), got "
            f"{matrix.dtype} {matrix.shape}"
        )
    for what, index, labels in (("tr", train, train_labels), ("tt", test, test_labels)):
        wrong = np.flatnonzero(labels[index] != label)
        if wrong.size:
            raise PublishedFileError(
                f"{source}: {wrong.size} of the {index.size} positions in {what}_classidx_"
                f"{label} have another label in {what}_labels (e.g. position "
                f"{int(index[wrong[0]])} has label {int(labels[index[wrong[0]]])}): the "
                "labels disagree, so the indices are in another order than the labels"
            )
        if np.unique(index).size != index.size:
            raise PublishedFileError(f"{source}: {what}_classidx_{label} repeats positions")
    return ClassBlock(label, train, test, matrix)


@contextlib.contextmanager
def _concatenated(parts: Sequence[str | os.PathLike], tmp_dir) -> Iterator[Path]:
    """The parts of one file joined, in order, into a temporary file (removed after)."""
    total = sum(Path(p).stat().st_size for p in parts)
    folder = Path(tempfile.mkdtemp(prefix="heldout-parts-", dir=tmp_dir))
    try:
        check_free_space(folder, total, "joining the parts of a class-wise influence file")
        joined = folder / "joined.npz"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        yield joined
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_classwise_influence(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    tmp_dir: str | os.PathLike | None = None,
) -> ClasswiseInfluence:
    """Reads a class-wise influence file (`cifar100_infl_matrix.npz`, ImageNet's parts).

    Args:
      path: the `.npz`, or the list of its parts in order (ImageNet's `.bin` files),
        which are joined into a temporary file first.
      tmp_dir: where to join the parts (default: the system's temporary folder).

    Returns:
      The blocks, checked: every class has its matrix and both index arrays, the matrix
      is [n_train_K, n_test_K], positions are in range and unique, no position is in two
      classes, every position has label K in `tr_labels` / `tt_labels`, and `tr_mem`
      has one value per training example.

    Raises:
      PublishedFileError: the first problem found; the message starts with the file.
    """
    parts = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not parts:
        raise PublishedFileError("no class-wise influence file given")
    source = ", ".join(os.fspath(p) for p in parts)
    missing = [os.fspath(p) for p in parts if not Path(p).is_file()]
    if missing:
        raise PublishedFileError(f"{missing[0]}: file not found")
    with contextlib.ExitStack() as stack:
        file = parts[0] if len(parts) == 1 else stack.enter_context(_concatenated(parts, tmp_dir))
        arrays = _load(file, "a class-wise influence .npz file", keys=CLASSWISE_KEYS)
    train_labels = _index_vector(arrays["tr_labels"], "tr_labels", source)
    test_labels = _index_vector(arrays["tt_labels"], "tt_labels", source)
    memorization = _real_vector(arrays["tr_mem"], "tr_mem", source)
    if memorization.shape != train_labels.shape:
        raise PublishedFileError(
            f"{source}: tr_mem has {memorization.size} entries, tr_labels {train_labels.size}"
        )
    blocks = {
        label: _check_block(label, arrays, train_labels, test_labels, source)
        for label in _class_keys(arrays, source)
    }
    for what, size in (("train", train_labels.size), ("test", test_labels.size)):
        index = np.concatenate([getattr(b, f"{what}_index") for b in blocks.values()])
        if np.unique(index).size != index.size or index.size > size:
            raise PublishedFileError(f"{source}: some {what} positions are in two classes")
    return ClasswiseInfluence(
        train_labels, test_labels, memorization, blocks, source, _provenance_of(arrays, source)
    )


def _write_member(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    """One array into an open `.npz` archive, as `np.savez` stores it (no pickle)."""
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def write_classwise_influence(
    path: str | os.PathLike,
    blocks: Iterable[ClassBlock],
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    train_memorization: np.ndarray,
    provenance: dict | None = None,
) -> int:
    """Writes a class-wise influence file from blocks handed over one class at a time.

    Each block goes into the archive as soon as it arrives, so only one class's matrix
    is in memory (ImageNet's 1 000 blocks together are ~256 MB as float32, but the
    runs behind them are what `heldout.scores.classwise` keeps small). The file is written
    under a temporary name and renamed when complete (`heldout._core.atomic.atomic_open`).

    Returns:
      The number of classes written.

    Raises:
      PublishedFileError: a block that does not fit the labels (checked as the loader
        checks it), or a class given twice.
    """
    path = Path(path)
    train_labels = _index_vector(train_labels, "tr_labels", str(path))
    test_labels = _index_vector(test_labels, "tt_labels", str(path))
    memorization = _real_vector(train_memorization, "tr_mem", str(path))
    written: set[int] = set()
    with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w", allowZip64=True) as archive:
        for block in blocks:
            label = int(block.label)
            if label in written:
                raise PublishedFileError(f"{path}: class {label} given twice")
            checked = _check_block(
                label,
                {
                    f"infl_matrix_class{label}": block.matrix,
                    f"tr_classidx_{label}": block.train_index,
                    f"tt_classidx_{label}": block.test_index,
                },
                train_labels,
                test_labels,
                str(path),
            )
            _write_member(archive, f"infl_matrix_class{label}", checked.matrix)
            _write_member(archive, f"tr_classidx_{label}", checked.train_index)
            _write_member(archive, f"tt_classidx_{label}", checked.test_index)
            written.add(label)
        _write_member(archive, "tr_labels", train_labels)
        _write_member(archive, "tt_labels", test_labels)
        _write_member(archive, "tr_mem", memorization)
        for key, value in _provenance_array(provenance).items():
            _write_member(archive, key, value)
    return len(written)


def describe(path: str | os.PathLike, allow_pickle: bool = False) -> tuple[str, Any]:
    """Which published format a file is in, loaded: ("cscores" | "pairs" | "classwise", obj).

    Decided by the arrays present, so a renamed file is still read correctly.

    Raises:
      PublishedFileError: the file is none of the formats, or is broken.
    """
    source = os.fspath(path)
    if source.endswith(".npy"):
        return "cscores", load_cscores(source)
    names = _member_names(source)
    if all(key in names for key in PAIR_KEYS):
        return "pairs", load_influence_pairs(source)
    if all(key in names for key in CLASSWISE_KEYS):
        return "classwise", load_classwise_influence(source)
    if "scores" in names:
        return "cscores", load_cscores(source, allow_pickle=allow_pickle)
    # Not recognizable from its members (or unreadable): the C-score loader says why.
    return "cscores", load_cscores(source, allow_pickle=allow_pickle)


def _member_names(path: str) -> set[str]:
    try:
        with zipfile.ZipFile(path) as npz:
            return {name.removesuffix(".npy") for name in npz.namelist()}
    except (OSError, zipfile.BadZipFile, EOFError):
        return set()


def provenance_for(**fields: Any) -> dict:
    """A provenance record (JSON-able): what a written file is a result of."""
    from heldout import __version__ as version  # noqa: PLC0415 - avoids an import cycle

    return {"heldout_version": version, **fields}


__all__ = [
    "CLASSWISE_KEYS",
    "CSCORE_KEYS",
    "ClassBlock",
    "ClasswiseInfluence",
    "CScoreFile",
    "DEFAULT_MIN_INFLUENCE",
    "DEFAULT_MIN_MEMORIZATION",
    "InfluencePairs",
    "PAIR_KEYS",
    "PublishedFileError",
    "describe",
    "load_classwise_influence",
    "load_cscores",
    "load_influence_pairs",
    "load_published_scores",
    "pairs_file_name",
    "pickled_members",
    "provenance_for",
    "select_pairs_dense",
    "select_pairs_topk",
    "thresholds_in_name",
    "write_classwise_influence",
    "write_cscores",
    "write_influence_pairs",
]
