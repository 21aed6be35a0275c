"""Write files so that a reader never sees half of one: temporary name, then rename.

Every output of the toolkit (aux arrays, score files, experiment metadata) goes through
here, so an interrupted command leaves either the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Opens a hidden temporary file beside `path`; renames it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode) as f:
            yield f
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """`np.savez` (uncompressed: the arrays are mostly random bits) written atomically."""
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)
