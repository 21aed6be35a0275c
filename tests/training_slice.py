"""Test data for the training tests: small slices of Debian's Fashion-MNIST as IDX files.

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
