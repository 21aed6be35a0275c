"""What the three published file formats share: keys, thresholds, value checks, provenance.

The C-score, influence-pairs and class-wise files are `.npz` archives checked the same way:
real vectors, in-range integer positions, an optional `provenance` JSON string our writers
add, and a refusal to unpickle unless the caller opts in. Formats: `docs/formats.md`.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from heldout._core.npz import load_npz
from heldout._core.provenance import parse_provenance
from heldout.errors import CompareError, PublishedFileError, UsageError

CSCORE_KEYS = ("labels", "scores")
PAIR_KEYS = ("tr_idx", "tt_idx", "infl", "mem")
CLASSWISE_KEYS = ("tr_labels", "tt_labels", "tr_mem")
PROVENANCE_KEY = "provenance"
# The thresholds of the published pair files (Feldman & Zhang 2020, Section 4): pairs whose
# influence is at least 0.15 and whose training example's memorization is at least 0.25.
DEFAULT_MIN_INFLUENCE = 0.15
DEFAULT_MIN_MEMORIZATION = 0.25

SHOW = 5  # offending values listed in an error message


def is_real(values: np.ndarray) -> bool:
    """Integer, float or bool: what a score or influence can be (not str, complex, object)."""
    return (
        values.dtype == np.bool_
        or np.issubdtype(values.dtype, np.integer)
        or np.issubdtype(values.dtype, np.floating)
    )


def checked_pair(ours: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two score vectors to compare, as float64; refused unless 1-D, equally long, real,
    and free of infinities (NaN marks an undefined score and is allowed)."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    for name, values in (("our scores", ours), ("the reference scores", reference)):
        if not is_real(values):
            raise CompareError(f"{name} have dtype {values.dtype}; expected numbers")
    ours, reference = ours.astype(np.float64), reference.astype(np.float64)
    if ours.shape != reference.shape or ours.ndim != 1:
        raise CompareError(
            f"score vectors must be 1-D and equally long, got {ours.shape} and "
            f"{reference.shape}; are both for the same split and dataset?"
        )
    for name, values in (("our scores", ours), ("the reference scores", reference)):
        infinite = np.flatnonzero(np.isinf(values))
        if infinite.size:  # NaN is "undefined" and skipped; an infinity is no score
            raise CompareError(
                f"{name} hold {infinite.size} infinite value(s), e.g. at "
                f"{infinite[:SHOW].tolist()}; a score is a finite number (NaN: undefined)"
            )
    return ours, reference


def real_vector(values: np.ndarray, what: str, source: str) -> np.ndarray:
    """float64 [n] from a 1-D array of numbers; anything else is refused."""
    values = np.asarray(values)
    if values.ndim != 1 or not is_real(values):
        raise PublishedFileError(
            f"{source}: {what} must be a 1-D array of numbers, got {values.dtype} {values.shape}"
        )
    return values.astype(np.float64)


def values_in_range(
    values: np.ndarray,
    what: str,
    source: str,
    low: float,
    high: float,
    allow_nan: bool = False,
) -> None:
    """Refuses values that are infinite, outside [low, high], or NaN unless `allow_nan`
    (NaN marks an undefined score: an example never held out).

    A value no estimate can take means a corrupted or foreign file; compared or ranked,
    it would shift every statistic without a word.

    Args:
      values: the numbers to check (any shape).
      what: the array's name in the message (`scores`, `infl`).
      source: the file, first in the message.
      low, high: the closed range every value must lie in.
      allow_nan: accept NaN (an undefined score).

    Raises:
      PublishedFileError: naming the file, how many values, and the first few.
    """
    values = np.asarray(values, dtype=np.float64)
    shape, values = values.shape, values.ravel()
    with np.errstate(invalid="ignore"):
        bad = ~((values >= low) & (values <= high))
    if allow_nan:
        bad &= ~np.isnan(values)
    where = np.flatnonzero(bad)
    if where.size:
        shown = values[where[:SHOW]].tolist()
        entries = where[:SHOW].tolist()
        if len(shape) > 1:  # (row, column) of a matrix
            entries = [tuple(int(i) for i in np.unravel_index(k, shape)) for k in entries]
        allowed = f"finite numbers in [{low:g}, {high:g}]" + (" (or NaN)" if allow_nan else "")
        raise PublishedFileError(
            f"{source}: {what} holds {where.size} value(s) that are not {allowed}, e.g. "
            f"{shown} at entr{'y' if where.size == 1 else 'ies'} {entries}"
            f"{' ...' if where.size > SHOW else ''}"
        )


def check_threshold(value: float, name: str) -> float:
    """`value` as a float, refused unless finite and in [0, 1] (NaN would select nothing,
    a negative threshold nearly every pair).

    Args:
      value: the threshold.
      name: its name in the message (`min_influence`).

    Returns:
      The threshold as a float.

    Raises:
      UsageError: naming the threshold.
    """
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise UsageError(f"{name} must be a finite number in [0, 1], got {value}")
    return value


def index_vector(values: np.ndarray, what: str, source: str, size: int | None = None):
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
        shown = values[bad[:SHOW]].tolist()
        limit = f"0..{size - 1}" if size is not None else "0 or more"
        raise PublishedFileError(
            f"{source}: {what} holds {bad.size} position(s) outside {limit}, e.g. {shown} "
            f"at entr{'y' if bad.size == 1 else 'ies'} {bad[:SHOW].tolist()}"
            f"{' ...' if bad.size > SHOW else ''}"
        )
    return values.astype(np.int64)


def provenance_from(arrays: dict[str, np.ndarray], source: str) -> dict | None:
    """The `provenance` JSON our writers add (None in the published files)."""
    if PROVENANCE_KEY not in arrays:
        return None
    return parse_provenance(arrays[PROVENANCE_KEY], source, PublishedFileError)


def provenance_arrays(provenance: dict | None) -> dict[str, np.ndarray]:
    """`{"provenance": <JSON string>}` for a writer, or {} when there is none."""
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


def load_arrays(path: str | os.PathLike, what: str, keys=None, allow_pickle: bool = False):
    """`heldout._core.npz.load_npz`, with a refusal that names the pickled arrays and the opt-in."""
    source = os.fspath(path)
    if not allow_pickle:
        pickled = pickled_members(source) if str(source).endswith(".npz") else []
        if pickled:
            verb = "is an object array" if len(pickled) == 1 else "are object arrays"
            raise PublishedFileError(
                f"{source}: {', '.join(pickled)} {verb} "
                "that numpy can only read by unpickling, which can run code from the file; "
                "pass allow_pickle=True only for a file you trust, e.g. "
                "the one downloaded from the paper's website"
            )
    return load_npz(
        source, keys=keys, allow_pickle=allow_pickle, error=PublishedFileError, what=what
    )


def member_names(path: str) -> set[str]:
    """The array names in an `.npz` (empty when it is not a readable zip)."""
    try:
        with zipfile.ZipFile(path) as npz:
            return {name.removesuffix(".npy") for name in npz.namelist()}
    except (OSError, zipfile.BadZipFile, EOFError):
        return set()
