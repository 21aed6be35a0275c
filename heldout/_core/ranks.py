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
