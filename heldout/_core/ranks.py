"""Rank statistics, once: average ranks, Spearman's rho, Kendall's tau-b, Pearson's r.

Every comparison of two vectors in the toolkit ranks with ties sharing their mean rank
and drops entries undefined (NaN) on either side, so one number means the same thing
wherever it is printed.
"""

from __future__ import annotations

import math

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n (float64) with ties sharing their mean rank, as Spearman's rho needs."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    is_new = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
    group = np.cumsum(is_new) - 1
    starts = np.flatnonzero(is_new)
    ends = np.append(starts[1:], values.size)
    mean_rank = (starts + ends + 1) / 2.0  # ranks start at 1
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def defined_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`a` and `b` (float64) restricted to the entries that are not NaN in either."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    both = ~np.isnan(a) & ~np.isnan(b)
    return a[both], b[both]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two equally long vectors; NaN for fewer than 2 values or a constant side."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size < 2:
        return math.nan
    a = a - a.mean()
    b = b - b.mean()
    scale = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / scale if scale > 0 else math.nan


def spearman(a: np.ndarray, b: np.ndarray, min_count: int = 3) -> tuple[float, int]:
    """Spearman's rho over the entries defined in both, and how many there were.

    Args:
      a, b: equally long vectors; NaN marks an undefined entry.
      min_count: fewer defined entries than this give NaN (a rank correlation of two
        points says nothing).

    Returns:
      (rho, count); rho is NaN below `min_count` or when a side is constant.
    """
    a, b = defined_pairs(a, b)
    if a.size < min_count:
        return math.nan, int(a.size)
    return pearson(average_ranks(a), average_ranks(b)), int(a.size)


def kendall_tau_b(a: np.ndarray, b: np.ndarray, min_count: int = 3) -> float:
    """Kendall's tau-b (ties on both sides accounted for) over the entries defined in both.

    NaN below `min_count` defined entries or when a side is constant. scipy's O(n log n)
    implementation, imported here so that importing this module stays cheap.
    """
    from scipy import stats

    a, b = defined_pairs(a, b)
    if a.size < min_count or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(stats.kendalltau(a, b, variant="b").statistic)


def average_ranks_columns(values: np.ndarray) -> np.ndarray:
    """`average_ranks` of every column of a 2-D array at once (float64 [n, m])."""
    values = np.asarray(values)
    n = values.shape[0]
    order = np.argsort(values, axis=0, kind="stable")
    ordered = np.take_along_axis(values, order, axis=0)
    positions = np.arange(n, dtype=np.float64)[:, None]
    is_new = np.empty(ordered.shape, dtype=bool)
    is_new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=is_new[1:])
    first = np.maximum.accumulate(np.where(is_new, positions, 0.0), axis=0)
    is_last = np.empty_like(is_new)
    is_last[-1:] = True
    is_last[:-1] = is_new[1:]
    last = np.where(is_last, positions, float(n))[::-1]
    last = np.minimum.accumulate(last, axis=0)[::-1]
    ranks = np.empty(ordered.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=0)
    return ranks


def spearman_columns(a: np.ndarray, b: np.ndarray, min_count: int = 3) -> np.ndarray:
    """`spearman(a[:, i], b[:, i])[0]` for every column i, vectorised over columns.

    Columns with a NaN on either side go through `spearman` one by one (their pairs differ).

    Args:
      a, b: [n, m] arrays of one shape.
      min_count: as `spearman`.

    Returns:
      float64 [m]; NaN below `min_count` defined pairs or where a side is constant.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"spearman_columns needs two 2-D arrays of one shape: {a.shape}, {b.shape}"
        )
    rho = np.full(a.shape[1], np.nan)
    if a.shape[0] < min_count or a.shape[1] == 0:
        return rho
    gaps = np.isnan(a).any(axis=0) | np.isnan(b).any(axis=0)
    for i in np.flatnonzero(gaps):
        rho[i] = spearman(a[:, i], b[:, i], min_count)[0]
    full = np.flatnonzero(~gaps)
    if full.size:
        ra = average_ranks_columns(a[:, full])
        rb = average_ranks_columns(b[:, full])
        ra -= ra.mean(axis=0)
        rb -= rb.mean(axis=0)
        scale = np.sqrt(np.einsum("ij,ij->j", ra, ra) * np.einsum("ij,ij->j", rb, rb))
        cross = np.einsum("ij,ij->j", ra, rb)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho[full] = np.where(scale > 0, cross / scale, np.nan)
    return rho
