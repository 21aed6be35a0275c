"""Test data and configs for the training tests: slices of Debian's Fashion-MNIST as IDX
files, tiny random `.npz` files, and the small runs the tests train on them.

The trainer reads any folder of IDX files, so a slice of a few thousand real examples
keeps the tests fast while they train on the real data. When Debian's files are missing
the tests that need them are skipped, saying why; they never fall back to other data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from heldout.datasets import idx
from heldout.errors import DatasetError
from heldout.training import TrainingConfig

# What the tests' small training runs share; each test module names what it changes.
SMALL_RUNS = dict(
    subset_ratios=(0.5,), runs_per_ratio=2, epochs=1, batch_size=100, val_examples=100, seed=7
)
# SmallInception on a `tiny_npz` file: one run, two steps of 16 examples per epoch.
TINY_CONV = dict(
    dataset="npz", arch="small_inception", runs_per_ratio=1, batch_size=16, val_examples=8
)


def write_idx(path: Path, array: np.ndarray) -> None:
    """One gzipped IDX file of unsigned bytes (the format of the MNIST distribution)."""
    idx.write_idx(path, array, compresslevel=9)


def write_fashion_slice(folder: Path, num_train: int, num_test: int) -> str:
    """The first examples of each split of Debian's Fashion-MNIST, written into `folder`.

    Skips the calling test when the files are not installed (`apt-get install
    dataset-fashion-mnist`, which setup.sh does) or cannot be read.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", num_train), ("test", num_test)):
        try:
            arrays = idx.load_idx_split(idx.DEBIAN_FASHION_MNIST_DIR, split)
        except (DatasetError, OSError) as error:
            pytest.skip(
                f"Debian's Fashion-MNIST is not usable at {idx.DEBIAN_FASHION_MNIST_DIR} "
                f"({error}); install dataset-fashion-mnist (setup.sh does)"
            )
        image_stem, label_stem = idx.IDX_FILES[split]
        write_idx(folder / f"{image_stem}.gz", arrays.images[:count, ..., 0])
        write_idx(folder / f"{label_stem}.gz", arrays.labels[:count].astype(np.uint8))
    return str(folder)


def tiny_npz(path: Path, num_train=64, num_test=16, shape=(8, 8, 3), seed=0) -> Path:
    """A `.npz` file (`x_train`, ...) of random uint8 images and labels of 4 classes."""
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (num_train, *shape), dtype=np.uint8),
        y_train=rng.integers(0, 4, num_train),
        x_test=rng.integers(0, 256, (num_test, *shape), dtype=np.uint8),
        y_test=rng.integers(0, 4, num_test),
    )
    return path


def small_config(data_dir, **settings) -> TrainingConfig:
    """The config of a few small runs on `data_dir`: `SMALL_RUNS`, then `settings`."""
    return TrainingConfig(**{**SMALL_RUNS, "data_dir": str(data_dir), **settings})


def tiny_conv_config(path, **settings) -> TrainingConfig:
    """SmallInception on a `tiny_npz` file: `small_config` with `TINY_CONV`, then `settings`."""
    return small_config(path, **{**TINY_CONV, **settings})
