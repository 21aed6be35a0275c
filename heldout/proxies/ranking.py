"""How well a proxy ranks examples like the reference C-score: Spearman and Kendall tau-b.

CBTL takes only E + 1 distinct values, so ties are the rule: Spearman uses average ranks
and Kendall's tau is the tau-b variant. Both are `heldout._core.ranks` (the toolkit's one
rank-statistics module); entries NaN on either side are left out.
"""

from __future__ import annotations

import numpy as np

from heldout._core import ranks


def spearman_rho(proxy: np.ndarray, reference: np.ndarray) -> float:
    """Spearman's rho with average ranks over the entries defined in both; NaN if < 3."""
    rho, _ = ranks.spearman(proxy, reference)
    return rho


def kendall_tau_b(proxy: np.ndarray, reference: np.ndarray) -> float:
    """Kendall's tau-b (ties on both sides accounted for) over the defined entries."""
    return ranks.kendall_tau_b(proxy, reference)
