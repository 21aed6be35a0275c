"""MNIST-like data from the original IDX files, in the files' (original) order.

IDX format (http://yann.lecun.com/exdb/mnist/): a big-endian header of two zero bytes,
a type byte (0x08 = unsigned byte), the number of dimensions, one uint32 per dimension,
then the data. Images are `idx3` (N, rows, cols), labels `idx1` (N). Files may be gzipped
(as distributed, and as Debian's `dataset-fashion-mnist` installs them) or not; gzip is
detected from the content, not the name.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from heldout._core.write_safety import ensure_dir
from heldout.datasets.base import ArraySource, ArraySplit, DatasetError

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

# File stems per split; `.gz` is tried first, then the un-gzipped name.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def find_idx_file(directory: str | os.PathLike, stem: str) -> Path:
    """`directory/stem.gz` if present, else `directory/stem`; the error names both."""
    directory = Path(directory)
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise DatasetError(
        f"{directory}: no IDX file {stem}.gz or {stem} (expected the MNIST / Fashion-MNIST "
        f"files {', '.join(s + '.gz' for pair in IDX_FILES.values() for s in pair)})."
    )


def read_idx(path: str | os.PathLike, expected_ndim: int | None = None) -> np.ndarray:
    """Reads one IDX file of unsigned bytes (gzipped or not) into a uint8 array."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:  # truncated or corrupt gzip stream
            raise DatasetError(f"{path}: cannot decompress gzip data ({e}).") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(
            f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'}; "
            "expected 0000 08 0N)."
        )
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != _UBYTE:
        raise DatasetError(
            f"{path}: IDX data type 0x{dtype_code:02x} is not supported (MNIST-like files "
            "hold unsigned bytes, 0x08)."
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise DatasetError(
            f"{path}: IDX file has {ndim} dimension(s), expected {expected_ndim} "
            f"(magic number {raw[:4].hex()}); is it the right file?"
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes).")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected_size = header_size + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected_size:
        what = "truncated" if len(raw) < expected_size else "has trailing bytes"
        raise DatasetError(
            f"{path}: IDX file {what}: header says shape {shape} ({expected_size} bytes "
            f"with header), file has {len(raw)} bytes."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def load_idx_split(directory: str | os.PathLike, split: str) -> ArraySplit:
    """Loads `train` or `test` from a folder of IDX files, in the files' order.

    Returns uint8 images `[N, 28, 28, 1]` and int64 labels `[N]`.
    """
    if split not in IDX_FILES:
        raise DatasetError(f"unknown IDX split {split!r}; expected one of {sorted(IDX_FILES)}.")
    image_stem, label_stem = IDX_FILES[split]
    image_path = find_idx_file(directory, image_stem)
    label_path = find_idx_file(directory, label_stem)
    images = read_idx(image_path, expected_ndim=3)
    labels = read_idx(label_path, expected_ndim=1)
    if len(images) != len(labels):
        raise DatasetError(
            f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels."
        )
    return ArraySplit(images=images[..., np.newaxis], labels=labels.astype(np.int64))


class IdxSource(ArraySource):
    """MNIST or Fashion-MNIST from IDX files: original order, `index` = row in the files."""

    def __init__(self, name: str, directory: str | os.PathLike, num_classes: int = 10):
        super().__init__(name, num_classes, (28, 28, 1), splits=tuple(IDX_FILES))
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise DatasetError(f"{name}: IDX folder {self.directory} does not exist.")

    def _load(self, split: str) -> ArraySplit:
        return load_idx_split(self.directory, split)


def write_idx(path: str | os.PathLike, array: np.ndarray, compresslevel: int = 1) -> None:
    """Writes `array` (unsigned bytes) as one gzipped IDX file, `read_idx`'s inverse.

    For slices of a dataset that the trainer, which reads any IDX folder, can train on;
    written under a temporary name and renamed (`heldout._core.atomic.atomic_open`).
    """
    from heldout._core.atomic import atomic_open

    array = np.ascontiguousarray(array, np.uint8)
    header = struct.pack(">BBBB", 0, 0, _UBYTE, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with atomic_open(path, "wb") as f:
        f.write(gzip.compress(header + array.tobytes(), compresslevel))


def write_idx_slice(
    folder: str | os.PathLike, source: ArraySource, num_train: int, num_test: int | None = None
) -> Path:
    """The first `num_train` training and `num_test` (default: all) test examples of
    `source` (single-channel images), as an IDX folder in the files' usual names.

    Returns:
      The folder.
    """
    folder = Path(folder)
    ensure_dir(folder)
    for split, count in (("train", num_train), ("test", num_test)):
        arrays = source.load_arrays(split)
        image_stem, label_stem = IDX_FILES[split]
        write_idx(folder / f"{image_stem}.gz", arrays.images[:count, ..., 0])
        write_idx(folder / f"{label_stem}.gz", arrays.labels[:count].astype(np.uint8))
    return folder
