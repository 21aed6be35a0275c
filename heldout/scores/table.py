"""A scores file as a CSV table: one row per training example, every column described.

Every tool reads CSV. The rows follow the release's order (the runs' `index` arrays);
each estimate comes with its interval, where the file has one, and the counts behind it.
Undefined values (NaN) are empty cells; floats are written so that they read back exactly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping

import numpy as np

from heldout._core.atomic import atomic_open
from heldout.errors import ScoresError
from heldout.scores import file as keys

__all__ = ["TableColumn", "load_score_table", "proxy_columns", "save_score_table", "score_table"]

_NOT_PROXIES = ("index", "labels", "reference")  # 1-D arrays of a proxies file that are not


@dataclasses.dataclass(frozen=True)
class TableColumn:
    """One column: its CSV name, values [N] (float NaN: empty) and what it holds."""

    name: str
    values: np.ndarray
    meaning: str


def _ratio_name(ratio: float) -> str:
    return f"{float(ratio):g}"


def score_table(
    arrays: Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
    original_index: np.ndarray | None = None,
    proxies: Iterable[TableColumn] = (),
) -> list[TableColumn]:
    """The columns of a scores file's table, one value per training example.

    Args:
      arrays: a scores file (`heldout.scores.file.load_scores`).
      labels: int [N], in the release's order (optional).
      original_index: int [N]: each example's position in the dataset's original order.
      proxies: extra columns (`proxy_columns`).

    Returns:
      The columns, `index` first.

    Raises:
      ScoresError: the file has no per-example score, or a column's length differs.
    """
    columns: list[TableColumn] = []
    if keys.CSCORE in arrays:
        columns += _cscore_columns(arrays)
    if keys.MEMORIZATION in arrays:
        columns += _memorization_columns(arrays)
    if keys.SOFT_CSCORE in arrays:
        columns.append(
            TableColumn(
                "soft_cscore",
                arrays[keys.SOFT_CSCORE],
                "soft C-score (held-out runs' mean probability of the label)",
            )
        )
        if keys.SOFT_CSCORE_COUNT_OUT in arrays:
            columns.append(
                TableColumn(
                    "soft_cscore_count_out",
                    arrays[keys.SOFT_CSCORE_COUNT_OUT],
                    "runs behind soft_cscore",
                )
            )
    if not columns:
        raise ScoresError("the scores file has no per-example score (C-score or memorization)")
    size = len(columns[0].values)
    first = [
        TableColumn(
            "index", np.arange(size), "position in the release's order (the runs' index arrays)"
        )
    ]
    if original_index is not None:
        first.append(
            TableColumn(
                "original_index",
                np.asarray(original_index),
                "position in the dataset's original order",
            )
        )
    if labels is not None:
        first.append(TableColumn("label", np.asarray(labels), "the training label"))
    columns = first + columns + list(proxies)
    for column in columns:
        if np.shape(column.values) != (size,):
            raise ScoresError(
                f"column {column.name} has shape {np.shape(column.values)}, the scores have "
                f"{size} training examples: a different dataset or order?"
            )
    return columns


def _cscore_columns(arrays: Mapping[str, np.ndarray]) -> list[TableColumn]:
    columns = [
        TableColumn(
            "cscore",
            arrays[keys.CSCORE],
            "C-score: mean of the per-ratio C-scores that are defined",
        )
    ]
    columns += _interval(arrays, keys.CSCORE, "C-score")
    if keys.CSCORE_RATIO_COUNT in arrays:
        columns.append(
            TableColumn(
                "cscore_ratio_count", arrays[keys.CSCORE_RATIO_COUNT], "subset ratios behind cscore"
            )
        )
    by_ratio = arrays.get(keys.CSCORE_BY_RATIO)
    counts = arrays.get(keys.CSCORE_COUNT_OUT_BY_RATIO)
    ratios = arrays.get(keys.SUBSET_RATIOS)
    if by_ratio is None or ratios is None:
        return columns
    low = arrays.get(keys.ci_low_key(keys.CSCORE_BY_RATIO))
    high = arrays.get(keys.ci_high_key(keys.CSCORE_BY_RATIO))
    for row, ratio in enumerate(np.asarray(ratios).reshape(-1)):
        r = _ratio_name(ratio)
        columns.append(
            TableColumn(
                f"cscore_at_{r}",
                by_ratio[row],
                f"C-score at subset ratio {r}: share correct when held out",
            )
        )
        if low is not None and high is not None:
            columns.append(
                TableColumn(
                    f"cscore_at_{r}_ci_low", low[row], f"lower limit of cscore_at_{r}'s interval"
                )
            )
            columns.append(
                TableColumn(
                    f"cscore_at_{r}_ci_high", high[row], f"upper limit of cscore_at_{r}'s interval"
                )
            )
        if counts is not None:
            columns.append(
                TableColumn(
                    f"cscore_at_{r}_count_out", counts[row], f"held-out runs behind cscore_at_{r}"
                )
            )
    return columns


def _memorization_columns(arrays: Mapping[str, np.ndarray]) -> list[TableColumn]:
    ratio = arrays.get(keys.SCORE_SUBSET_RATIO)
    at = "" if ratio is None else f" at subset ratio {_ratio_name(ratio)}"
    columns = [
        TableColumn(
            "memorization",
            arrays[keys.MEMORIZATION],
            f"memorization{at}: P(correct | trained) - P(correct | held out)",
        )
    ]
    columns += _interval(arrays, keys.MEMORIZATION, "memorization")
    for key, meaning in (
        (keys.MEMORIZATION_STDERR, "standard error of memorization"),
        (keys.MEMORIZATION_COUNT_IN, "runs that trained on the example"),
        (keys.MEMORIZATION_COUNT_OUT, "runs that held the example out"),
    ):
        if key in arrays:
            columns.append(TableColumn(key, arrays[key], meaning))
    return columns


def _interval(arrays: Mapping[str, np.ndarray], key: str, what: str) -> list[TableColumn]:
    low, high = keys.ci_low_key(key), keys.ci_high_key(key)
    if low not in arrays or high not in arrays:
        return []
    confidence = arrays.get(keys.CONFIDENCE)
    level = "" if confidence is None else f"{float(confidence):.0%} "
    return [
        TableColumn(low, arrays[low], f"lower limit of the {level}interval of {what}"),
        TableColumn(high, arrays[high], f"upper limit of the {level}interval of {what}"),
    ]


def proxy_columns(proxies: Mapping[str, np.ndarray], size: int) -> list[TableColumn]:
    """The proxies of a `heldout proxies` file as columns `proxy_<name>`, in release order.

    Its `index` (if any) places each value; examples it did not cover are empty.

    Args:
      proxies: the file's arrays.
      size: N, the training examples of the table.

    Returns:
      One column per proxy (1-D numeric arrays other than index, labels and reference);
      arrays of another length than the index or N (per epoch, per seed) are left out.

    Raises:
      ScoresError: an index outside 0..N-1.
    """
    index = np.asarray(proxies["index"]) if "index" in proxies else None
    columns = []
    for name, values in proxies.items():
        values = np.asarray(values)
        if name in _NOT_PROXIES or values.ndim != 1 or not np.issubdtype(values.dtype, np.number):
            continue
        if index is None or len(values) != len(index):
            if len(values) != size:
                continue  # per epoch or per seed, not per example
            placed = values.astype(np.float64)
        else:
            if index.size and (index.min() < 0 or index.max() >= size):
                raise ScoresError(f"the proxies' index is outside 0..{size - 1}")
            placed = np.full(size, np.nan)
            placed[index] = values
        columns.append(TableColumn(f"proxy_{name}", placed, f"the {name} proxy (heldout proxies)"))
    return columns


def _cells(values: np.ndarray) -> list[str]:
    """Exact text of each value: integers as they are, floats round-tripping, NaN empty."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer) or values.dtype == bool:
        return [str(int(v)) for v in values.tolist()]
    as_float = values.astype(np.float64) if values.dtype != np.float64 else values
    return ["" if v != v else repr(v) for v in as_float.tolist()]


def save_score_table(path: str | os.PathLike, columns: list[TableColumn], title: str = "") -> None:
    """Writes the table as CSV, atomically: `#` lines saying what each column is, then
    the header row and one row per training example.

    Args:
      path: the `.csv` to write (replaced when complete).
      columns: from `score_table`.
      title: a first `#` line (what the table was made from).

    Raises:
      OSError: the file could not be written (nothing is left at `path` then).
    """
    preamble = [f"# {title}"] if title else []
    preamble += ["# empty cell: undefined (NaN); read with e.g. pandas.read_csv(path, comment='#')"]
    preamble += [f"# {column.name}: {column.meaning}" for column in columns]
    cells = [_cells(column.values) for column in columns]
    with atomic_open(path, "w") as f:
        f.write("\n".join(preamble) + "\n")
        f.write(",".join(column.name for column in columns) + "\n")
        for row in zip(*cells, strict=True):
            f.write(",".join(row) + "\n")


def load_score_table(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A table written by `save_score_table`, read back.

    Args:
      path: the `.csv`.

    Returns:
      Column name -> float64 values, NaN where a cell is empty.
    """
    with open(path) as f:
        lines = [line.rstrip("\n") for line in f if not line.startswith("#")]
    names = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    return {
        name: np.array([float(row[i]) if row[i] else np.nan for row in rows], np.float64)
        for i, name in enumerate(names)
    }
