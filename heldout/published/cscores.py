"""The C-score files: published (`cifar10-cscores-orig-order.npz`, MNIST's `.npy`,
ImageNet's with pickled file names) and ours, read, checked and written.

An `.npz` holds `labels` [N] int and `scores` [N] float (ImageNet's adds `filenames`,
which we write as a unicode array: no pickle); a `.npy` holds the scores alone.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from heldout._core.atomic import atomic_open, write_npz_atomic
from heldout.errors import PublishedFileError
from heldout.published.format import (
    index_vector,
    load_arrays,
    provenance_arrays,
    provenance_from,
    real_vector,
    values_in_range,
)


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
        scores = real_vector(self.scores, "scores", self.source)
        # A C-score is a probability; NaN marks an example no run held out.
        values_in_range(scores, "scores", self.source, 0.0, 1.0, allow_nan=True)
        if not np.any(~np.isnan(scores)):
            raise PublishedFileError(
                f"{self.source}: scores holds no defined C-score "
                f"({'empty' if scores.size == 0 else f'all {scores.size} are NaN'})"
            )
        object.__setattr__(self, "scores", scores)
        if self.labels is not None:
            labels = index_vector(self.labels, "labels", self.source)
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
        `imagenet-cscores-with-filename.npz`, or one written by `save_cscores` or
        `tools/map_order.py`.
      allow_pickle: needed for ImageNet's file only, whose `filenames` numpy stores as
        pickled Python strings. Unpickling runs code from the file: opt in only for a
        file you trust.

    Returns:
      The scores, checked (see `CScoreFile`).

    Raises:
      PublishedFileError: missing, unreadable or pickled (without `allow_pickle`) file; no
        `scores`; scores that are not a vector of numbers, are infinite or outside [0, 1],
        or none defined (empty, all NaN); labels or file names of another length. The
        message starts with the file.
    """
    source = os.fspath(path)
    arrays = load_arrays(source, "a C-score file (.npz or .npy)", allow_pickle=allow_pickle)
    if "" in arrays:  # a .npy: the scores alone (MNIST's published file)
        return CScoreFile(arrays[""], None, source)
    if "scores" not in arrays:
        raise PublishedFileError(f"{source}: no `scores` array (it has {sorted(arrays)})")
    return CScoreFile(
        scores=arrays["scores"],
        labels=arrays.get("labels"),
        source=source,
        filenames=arrays.get("filenames"),
        provenance=provenance_from(arrays, source),
    )


def save_cscores(
    path: str | os.PathLike,
    scores: np.ndarray,
    labels: np.ndarray | None,
    filenames: Sequence[str] | None = None,
    provenance: dict | None = None,
) -> None:
    """Writes C-scores in the published format, atomically (`heldout._core.atomic`).

    Args:
      path: an `.npz` gets `labels` (int64), `scores` (float64), `filenames` when given
        (as a unicode array: no pickle) and `provenance`; a `.npy` gets the scores alone,
        as MNIST's published file (labels are then not written, file names refused).
      scores: float [N], the C-scores.
      labels: int [N]; required for an `.npz`, None allowed for a `.npy`.
      filenames: str [N] (ImageNet's file), or None.
      provenance: what the scores were computed from (`heldout._core.provenance.
        provenance_for`), stored as a JSON string; None stores none.

    Returns:
      None; the file is complete when this returns (or absent, after an error).

    Raises:
      PublishedFileError: shapes or dtypes that do not fit the format, no labels for an
        `.npz`, or file names for a `.npy`.
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
    write_npz_atomic(path, {**arrays, **provenance_arrays(provenance)})
