"""The class-wise influence files (`cifar100_infl_matrix.npz`, ImageNet's `.bin` parts):
read, checked, and written one class at a time.

Per class K: `infl_matrix_class{K}` [n_train_K, n_test_K] (rows are TRAINING examples),
`tr_classidx_{K}`, `tt_classidx_{K}` (positions in the full splits); plus `tr_labels`,
`tt_labels` and `tr_mem` (memorization of every training example).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from heldout._core.atomic import atomic_open
from heldout._core.system import check_free_space
from heldout.errors import PublishedFileError
from heldout.published.format import (
    CLASSWISE_KEYS,
    DEFAULT_MIN_INFLUENCE,
    DEFAULT_MIN_MEMORIZATION,
    SHOW,
    check_threshold,
    index_vector,
    is_real,
    load_arrays,
    provenance_arrays,
    provenance_from,
    real_vector,
    values_in_range,
)
from heldout.published.pairs import PublishedPairs, ordered_pairs
from heldout.scores.classwise import ClassBlock

_MATRIX_KEY = re.compile(r"^infl_matrix_class(\d+)$", re.ASCII)
_TRAIN_INDEX_KEY = re.compile(r"^tr_classidx_(\d+)$", re.ASCII)
_TEST_INDEX_KEY = re.compile(r"^tt_classidx_(\d+)$", re.ASCII)


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
    ) -> PublishedPairs:
        """The same-class pairs passing both thresholds (a class-wise file has no others).

        Raises:
          UsageError: a threshold that is not a finite number in [0, 1].
        """
        min_influence = check_threshold(min_influence, "min_influence")
        min_memorization = check_threshold(min_memorization, "min_memorization")
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
        return ordered_pairs(
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
            f"{source}: classes {lacking[:SHOW]} lack one of infl_matrix_class<K>, "
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
    train = index_vector(
        arrays[f"tr_classidx_{label}"], f"tr_classidx_{label}", source, len(train_labels)
    )
    test = index_vector(
        arrays[f"tt_classidx_{label}"], f"tt_classidx_{label}", source, len(test_labels)
    )
    if matrix.ndim != 2 or not is_real(matrix) or matrix.shape != (train.size, test.size):
        raise PublishedFileError(
            f"{source}: infl_matrix_class{label} must be a real [n_train_K, n_test_K] = "
            f"[{train.size}, {test.size}] matrix (rows are training examples), got "
            f"{matrix.dtype} {matrix.shape}"
        )
    # Influence estimates: finite and within [-1, 1]; NaN where one is undefined.
    values_in_range(matrix, f"infl_matrix_class{label}", source, -1.0, 1.0, allow_nan=True)
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
      classes, every position has label K in `tr_labels` / `tt_labels`, `tr_mem`
      has one value per training example, and every value is NaN or finite in [-1, 1].

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
        arrays = load_arrays(file, "a class-wise influence .npz file", keys=CLASSWISE_KEYS)
    train_labels = index_vector(arrays["tr_labels"], "tr_labels", source)
    test_labels = index_vector(arrays["tt_labels"], "tt_labels", source)
    memorization = real_vector(arrays["tr_mem"], "tr_mem", source)
    values_in_range(memorization, "tr_mem", source, -1.0, 1.0, allow_nan=True)
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
        train_labels, test_labels, memorization, blocks, source, provenance_from(arrays, source)
    )


def _write_member(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    """One array into an open `.npz` archive, as `np.savez` stores it (no pickle)."""
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def save_classwise_influence(
    path: str | os.PathLike,
    blocks: Iterable[ClassBlock],
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    train_memorization: np.ndarray,
    provenance: dict | None = None,
) -> int:
    """Writes a class-wise influence file from blocks handed over one class at a time.

    Each block goes into the archive as soon as it arrives, so only one class's matrix
    is in memory. The file is written under a temporary name and renamed when complete
    (`heldout._core.atomic.atomic_open`).

    Args:
      path: the `.npz` to write.
      blocks: one `ClassBlock` per class, in any order, each class once.
      train_labels: int [N_train], the labels the blocks' training rows must have.
      test_labels: int [N_test], the labels the blocks' test columns must have.
      train_memorization: float [N_train], stored as `tr_mem`.
      provenance: what the blocks were computed from, stored as a JSON string.

    Returns:
      The number of classes written.

    Raises:
      PublishedFileError: a block that does not fit the labels (checked as the loader
        checks it), or a class given twice.
    """
    path = Path(path)
    train_labels = index_vector(train_labels, "tr_labels", str(path))
    test_labels = index_vector(test_labels, "tt_labels", str(path))
    memorization = real_vector(train_memorization, "tr_mem", str(path))
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
        for key, value in provenance_arrays(provenance).items():
            _write_member(archive, key, value)
    return len(written)
