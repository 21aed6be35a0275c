"""How well a proxy ranks examples like the reference C-score: Spearman and Kendall tau-b.

CBTL takes only E + 1 distinct values, so ties are the rule: Spearman uses average ranks
and Kendall's tau is the tau-b variant, which corrects for ties on either side (scipy's
`kendalltau`, a pinned dependency). Entries NaN on either side (examples the reference
never held out) are left out of both.
"""

from __future__ import annotations

import math

import numpy as np


def _defined(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    both = ~np.isnan(a) & ~np.isnan(b)
    return a[both], b[both]


def spearman_rho(proxy: np.ndarray, reference: np.ndarray) -> float:
    """Spearman's rho with average ranks over the entries defined in both; NaN if < 3."""
    from scipy import stats

    a, b = _defined(proxy, reference)
    if a.size < 3:
        return math.nan
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    scale = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / scale if scale > 0 else math.nan


def kendall_tau_b(proxy: np.ndarray, reference: np.ndarray) -> float:
    """Kendall's tau-b (ties on both sides accounted for) over the defined entries."""
    from scipy import stats

    a, b = _defined(proxy, reference)
    if a.size < 3:
        return math.nan
    return float(stats.kendalltau(a, b, variant="b").statistic)
