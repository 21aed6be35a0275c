"""Exact upper tails of the hypergeometric distribution, vectorized: Fisher's exact test.

For a pair over R runs with n_in runs that trained on j and c that got t right, S ~
Hypergeometric(R, n_in, c) when j does not matter; the p-value is P(S' >= S). The tail is
summed directly from the term ratios and a table of log factorials, faster than scipy's
`hypergeom.sf` for millions of pairs (docs/performance.md).
"""

from __future__ import annotations

import numpy as np

# Stop a tail sum once a term adds less than this, relative to the sum.
_RELATIVE_TOLERANCE = 1e-14
_CHUNK = 1 << 14  # elements per tail-sum chunk: its dozen arrays stay in cache


def log_factorials(largest: int) -> np.ndarray:
    """float64 [largest + 1]: log k! for k = 0..largest."""
    from scipy import special  # imported when needed: `import heldout.scores.experiment` stays fast

    return special.gammaln(np.arange(largest + 1, dtype=np.float64) + 1.0)


def _support(n_in, correct, runs):
    low = np.maximum(0, n_in + correct - runs)
    high = np.minimum(n_in, correct)
    return low, high


def log_pmf(s, n_in, correct, runs, log_fact) -> np.ndarray:
    """log P(S = s) for S ~ Hypergeometric(runs, n_in, correct); s inside the support."""
    n_out = runs - n_in
    return (
        log_fact[n_in]
        - log_fact[s]
        - log_fact[n_in - s]
        + log_fact[n_out]
        - log_fact[correct - s]
        - log_fact[n_out - correct + s]
        - log_fact[runs]
        + log_fact[correct]
        + log_fact[runs - correct]
    )


def _up_ratio(k, n_in, correct, runs):
    """pmf(k + 1) / pmf(k)."""
    n_out = runs - n_in
    return ((n_in - k) * (correct - k)) / ((k + 1.0) * (n_out - correct + k + 1.0))


def _log_tail_factor(start, stop, n_in, correct, runs, upward: bool) -> np.ndarray:
    """log(1 + r + r r' + ...): the tail from `start` to `stop` relative to pmf(start).

    Upward the terms are pmf(k + 1) / pmf(k) products, downward pmf(k - 1) / pmf(k);
    `stop` is the support's end on that side. Done in cache-sized chunks.
    """
    out = np.zeros(start.shape)
    for first in range(0, start.size, _CHUNK):
        part = slice(first, first + _CHUNK)
        out[part] = _chunk_tail_factor(
            start[part], stop[part], n_in[part], correct[part], runs, upward
        )
    return out


def _chunk_tail_factor(start, stop, n_in, correct, runs, upward: bool) -> np.ndarray:
    # A finished sum's term is set to 0 and its k parked at its start (where the ratio is
    # finite); finished sums are dropped every few steps, which is cheaper than
    # compacting the arrays at every step.
    out = np.zeros(start.shape)
    index = np.flatnonzero(start != stop)
    k = start[index].astype(np.float64)
    parked = k.copy()
    end = stop[index].astype(np.float64)
    n = n_in[index].astype(np.float64)
    c = correct[index].astype(np.float64)
    gap = (runs - n) - c  # n_out - c
    term = np.ones(index.size)
    total = np.ones(index.size)
    numerator, denominator = np.empty(index.size), np.empty(index.size)
    finished = np.empty(index.size, dtype=bool)
    step = 1.0 if upward else -1.0
    while index.size:
        for _ in range(8):
            if upward:  # (n - k)(c - k) / ((k + 1)(gap + k + 1))
                np.subtract(n, k, out=numerator)
                numerator *= c - k
                np.add(k, 1.0, out=denominator)
                denominator *= gap + k + 1.0
            else:  # k (gap + k) / ((n - k + 1)(c - k + 1))
                np.add(gap, k, out=numerator)
                numerator *= k
                np.subtract(n + 1.0, k, out=denominator)
                denominator *= c + 1.0 - k
            numerator /= denominator
            term *= numerator
            total += term
            k += step
            np.equal(k, end, out=finished)
            finished |= term <= _RELATIVE_TOLERANCE * total
            term[finished] = 0.0
            np.copyto(k, parked, where=finished)
        live = term > 0
        out[index[~live]] = np.log(total[~live])
        index, k, parked, end, n, c, gap, term, total = (
            a[live] for a in (index, k, parked, end, n, c, gap, term, total)
        )
        numerator, denominator, finished = numerator[live], denominator[live], finished[live]
    return out


def log_sf(s, n_in, correct, runs: int, log_fact: np.ndarray) -> np.ndarray:
    """log P(S' >= s), S' ~ Hypergeometric(runs, n_in, correct): Fisher's one-sided p.

    Args:
      s, n_in, correct: integer arrays (broadcast together).
      runs: R.
      log_fact: `log_factorials(runs)`.

    Returns:
      float64 array: 0 at or below the support, -inf above it.
    """
    s, n_in, correct = (np.asarray(a, dtype=np.int64) for a in (s, n_in, correct))
    shape = np.broadcast_shapes(s.shape, n_in.shape, correct.shape)
    s, n_in, correct = (np.broadcast_to(a, shape).reshape(-1) for a in (s, n_in, correct))
    low, high = _support(n_in, correct, runs)
    out = np.zeros(s.shape)
    out[s > high] = -np.inf
    inside = np.flatnonzero((s > low) & (s <= high))
    if inside.size:
        si, ni, ci = s[inside], n_in[inside], correct[inside]
        mode = ((ni + 1) * (ci + 1)) // (runs + 2)
        above = si > mode
        result = np.empty(si.shape)
        if above.any():
            a = np.flatnonzero(above)
            result[a] = log_pmf(si[a], ni[a], ci[a], runs, log_fact) + _log_tail_factor(
                si[a], high[inside][a], ni[a], ci[a], runs, upward=True
            )
        if (~above).any():
            b = np.flatnonzero(~above)
            below = si[b] - 1  # >= low
            log_cdf = log_pmf(below, ni[b], ci[b], runs, log_fact) + _log_tail_factor(
                below, low[inside][b], ni[b], ci[b], runs, upward=False
            )
            result[b] = np.log1p(-np.minimum(np.exp(log_cdf), 1.0))
        out[inside] = result
    return out.reshape(shape)


def log_sf_lower_bound(s, n_in, correct, runs: int, log_fact: np.ndarray) -> np.ndarray:
    """A cheap lower bound of `log_sf` for s above the mode: log(pmf(s) (1 + r_s)).

    The first two terms of the tail: exact to a factor 1 / (1 - r_s^2), and always below
    the tail, which is what a bound on the Benjamini-Hochberg threshold needs.
    """
    s, n_in, correct = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.int64) for a in (s, n_in, correct))
    )
    low, high = _support(n_in, correct, runs)
    inside = (s > low) & (s <= high)
    clipped = np.clip(s, low, high)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            clipped < high, _up_ratio(clipped.astype(np.float64), n_in, correct, runs), 0.0
        )
    bound = log_pmf(clipped, n_in, correct, runs, log_fact) + np.log1p(ratio)
    return np.where(inside, bound, np.where(s > high, -np.inf, 0.0))


def critical_successes(
    n_in: np.ndarray, correct: np.ndarray, runs: int, alpha: float, log_fact: np.ndarray
) -> np.ndarray:
    """int64 [len(correct), len(n_in)]: the smallest s with P(S' >= s) <= alpha.

    One entry per (c, n_in) combination, not per pair: pairs whose S is below it have a
    p-value above alpha and can never be selected at a false-discovery rate alpha. The
    search starts at the normal approximation's critical value, takes the exact tail
    there, and walks one step at a time (adding or removing one pmf term) to the exact
    critical value, a few steps away. An entry of high + 1 means no s qualifies.
    """
    c_grid, n_grid = np.meshgrid(
        np.asarray(correct, np.int64), np.asarray(n_in, np.int64), indexing="ij"
    )
    c_flat, n_flat = c_grid.reshape(-1), n_grid.reshape(-1)
    low, high = _support(n_flat, c_flat, runs)
    mean = n_flat * c_flat / runs
    spread = np.sqrt(
        np.maximum(mean * (1 - c_flat / runs) * (runs - n_flat) / max(runs - 1, 1), 0.0)
    )
    from scipy import special

    z = float(special.ndtri(1.0 - alpha))
    s = np.clip(np.ceil(mean + z * spread), low + 1, high + 1).astype(np.int64)
    tail = np.exp(log_sf(s, n_flat, c_flat, runs, log_fact))  # sf(s)
    # Walk up while sf(s) > alpha: sf(s + 1) = sf(s) - pmf(s).
    up = np.flatnonzero(tail > alpha)
    while up.size:
        tail[up] -= np.exp(log_pmf(s[up], n_flat[up], c_flat[up], runs, log_fact))
        s[up] += 1
        exact = s[up] > high[up]
        tail[up[exact]] = 0.0
        up = up[tail[up] > alpha]
    # Walk down while sf(s - 1) = sf(s) + pmf(s - 1) <= alpha and s - 1 > low.
    down = np.flatnonzero(s - 1 > low)
    while down.size:
        previous = tail[down] + np.exp(
            log_pmf(s[down] - 1, n_flat[down], c_flat[down], runs, log_fact)
        )
        ok = previous <= alpha
        down = down[ok]
        tail[down] = previous[ok]
        s[down] -= 1
        down = down[s[down] - 1 > low[down]]
    return s.reshape(c_grid.shape)
