"""Confidence intervals for C-scores, memorization and influence, from the counts alone.

Each estimate is a proportion, a mean of proportions or a difference of two proportions
of run outcomes, so its interval needs only the integer counts the engine keeps: Wilson
(Jeffreys at 1 and n - 1 successes) for a C-score at a ratio, Price-Bonett for the
integral C-score, Mee's score interval for memorization and (from a table, up to
`MEE_TABLE_ENTRIES` count pairs) influence, Newcombe's hybrid beyond. Where the estimate
is NaN the interval is NaN too. Choices and measured coverage: docs/methods.md.
"""

from __future__ import annotations

import numpy as np

from heldout.errors import ScoresError
from heldout.scores.request import check_confidence
from heldout.scores.results import CScores, Influence, Memorization, ScoreIntervals

__all__ = [
    "MEE_TABLE_ENTRIES",
    "CorrectTestCounts",
    "binomial_interval",
    "influence_intervals",
    "mean_of_proportions_interval",
    "mee_interval",
    "newcombe_interval",
    "score_intervals",
]


# Count pairs up to which influence intervals are Mee's, from a table of every pair; beyond,
# Newcombe's (building the table costs time per pair: docs/performance.md).
MEE_TABLE_ENTRIES = 1 << 17


def _z(confidence: float) -> float:
    from scipy import special  # imported when needed: `import heldout.scores.experiment` stays fast

    return float(special.ndtri(1.0 - (1.0 - confidence) / 2.0))


def _counts(successes, count) -> tuple[np.ndarray, np.ndarray]:
    """float64 arrays broadcast to one shape."""
    x, n = np.asarray(successes, dtype=np.float64), np.asarray(count, dtype=np.float64)
    return tuple(np.array(a) for a in np.broadcast_arrays(x, n))


def binomial_interval(
    successes: np.ndarray, count: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided interval for a proportion: Wilson, with Jeffreys limits next to 0 and n.

    Args:
      successes, count: arrays of the same shape (integers, 0 <= successes <= count).
      confidence: e.g. 0.95.

    Returns:
      (low, high), float64, NaN where count is 0.
    """
    from scipy import special

    confidence = check_confidence(confidence)
    x, n = _counts(successes, count)
    z = _z(confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / n
        denominator = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denominator
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
        low, high = centre - half, centre + half
        # Jeffreys' lower limit for 1 success: the Beta(1.5, n - 0.5) quantile (slow to
        # compute: once per distinct count).
        counts, inverse = np.unique(n, return_inverse=True)
        near = special.betaincinv(1.5, np.maximum(counts - 0.5, 0.5), (1 - confidence) / 2)
        near = near[inverse.reshape(n.shape)]
    low = np.where(x == 1, near, low)
    high = np.where(n - x == 1, 1.0 - near, high)
    low = np.where(x == 0, 0.0, np.clip(low, 0.0, 1.0))
    high = np.where(x == n, 1.0, np.clip(high, 0.0, 1.0))
    undefined = ~(n > 0)
    low[undefined] = np.nan
    high[undefined] = np.nan
    return low, high


def mean_of_proportions_interval(
    successes: np.ndarray, count: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Interval for the mean of the defined proportions of each column (Price & Bonett).

    Args:
      successes, count: [K, N]: K proportions per example (e.g. one per subset ratio);
        those with count 0 are left out of the mean, as the integral C-score does.
      confidence: e.g. 0.95.

    Returns:
      (low, high) float64 [N], NaN where no proportion is defined; always containing the
      plain mean of the proportions.
    """
    confidence = check_confidence(confidence)
    x, n = _counts(successes, count)
    z = _z(confidence)
    defined = n > 0
    k = defined.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        add = 2.0 / k  # per proportion, 2/k successes and 2/k failures
        adjusted_n = n + 2.0 * add
        adjusted = (x + add) / adjusted_n
        centre = np.where(defined, adjusted, 0.0).sum(axis=0) / k
        variance = np.where(defined, adjusted * (1 - adjusted) / adjusted_n, 0.0).sum(axis=0)
        half = z * np.sqrt(variance) / k
        estimate = np.where(defined, x / n, 0.0).sum(axis=0) / k
    low = np.minimum(np.clip(centre - half, 0.0, 1.0), estimate)
    high = np.maximum(np.clip(centre + half, 0.0, 1.0), estimate)
    low[k == 0] = np.nan
    high[k == 0] = np.nan
    return low, high


def newcombe_interval(
    x1: np.ndarray, n1: np.ndarray, x2: np.ndarray, n2: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval for p1 - p2 (MOVER on `binomial_interval`).

    Returns:
      (low, high) float64, NaN where either count is 0.
    """
    x1, n1 = _counts(x1, n1)
    x2, n2 = _counts(x2, n2)
    low1, high1 = binomial_interval(x1, n1, confidence)
    low2, high2 = binomial_interval(x2, n2, confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = x1 / n1, x2 / n2
    difference = p1 - p2
    low = difference - np.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2)
    high = difference + np.sqrt((high1 - p1) ** 2 + (p2 - low2) ** 2)
    return np.clip(low, -1.0, 1.0), np.clip(high, -1.0, 1.0)


# ---------------------------------------------------------------------------------------
# Mee's score interval for a difference of proportions.


class _ScoreTest:
    """The score statistic for p1 - p2 = delta, with the per-count constants computed once.

    The constrained maximum-likelihood estimates are Miettinen & Nurminen's closed-form
    root of a cubic whose coefficients are polynomials in delta; everything that does not
    depend on delta is kept, since the bisection evaluates the statistic ~50 times.
    """

    def __init__(self, x1, n1, x2, n2):
        self.n1, self.n2 = n1, n2
        self.p1, self.p2 = x1 / n1, x2 / n2
        theta = n2 / n1
        self.a3 = 3.0 * (1.0 + theta)  # 3a
        self.inv_a = 1.0 / (1.0 + theta)
        self.b0 = -(1.0 + theta + self.p1 + theta * self.p2)
        self.b1 = -(theta + 2.0)
        self.c0 = self.p1 + theta * self.p2
        self.c1 = 2.0 * self.p1 + theta + 1.0

    def statistic(self, delta: np.ndarray) -> np.ndarray:
        b = (self.b0 + self.b1 * delta) * self.inv_a  # coefficients over a
        c = (self.c0 + (self.c1 + delta) * delta) * self.inv_a
        d = -self.p1 * delta * (1.0 + delta) * self.inv_a
        v = b * b * b / 27.0 - b * c / 6.0 + d / 2.0
        u = np.sign(v) * np.sqrt(np.maximum(b * b / 9.0 - c / 3.0, 0.0))
        safe_u = np.where(u == 0, 1.0, u)
        cosine = np.clip(np.where(u == 0, 0.0, v / (safe_u * safe_u * safe_u)), -1.0, 1.0)
        w = (np.pi + np.arccos(cosine)) / 3.0
        q1 = np.clip(2.0 * u * np.cos(w) - b / 3.0, 0.0, 1.0)
        q2 = np.clip(q1 - delta, 0.0, 1.0)
        variance = q1 * (1 - q1) / self.n1 + q2 * (1 - q2) / self.n2
        distance = self.p1 - self.p2 - delta
        with np.errstate(divide="ignore", invalid="ignore"):
            statistic = distance / np.sqrt(variance)
            # A zero variance happens only at delta = +-1, where the distance is 0 or the
            # difference is impossible: a distance of 0 is inside, anything else outside.
            outside = np.where(distance == 0, 0.0, np.sign(distance) * np.inf)
        return np.where(variance > 0, statistic, outside)


def _score_statistic(x1, n1, x2, n2, delta):
    """The score statistic of Mee's interval (for tests and checks)."""
    return _ScoreTest(x1, n1, x2, n2).statistic(delta)


def mee_interval(
    x1: np.ndarray,
    n1: np.ndarray,
    x2: np.ndarray,
    n2: np.ndarray,
    confidence: float = 0.95,
    iterations: int = 40,
) -> tuple[np.ndarray, np.ndarray]:
    """Mee's score interval for p1 - p2: every delta the score test does not reject.

    Computed once per distinct (x1, n1, x2, n2) (few, as counts are small integers) by
    bisection on each side of the estimate; the score statistic is monotone there.

    Returns:
      (low, high) float64, NaN where either count is 0.
    """
    confidence = check_confidence(confidence)
    x1, n1 = _counts(x1, n1)
    x2, n2 = _counts(x2, n2)
    shape = np.broadcast_shapes(x1.shape, n1.shape, x2.shape, n2.shape)
    key = np.stack([np.broadcast_to(a, shape).reshape(-1) for a in (x1, n1, x2, n2)], axis=1)
    defined = (key[:, 1] > 0) & (key[:, 3] > 0)
    low = np.full(key.shape[0], np.nan)
    high = np.full(key.shape[0], np.nan)
    if defined.any():
        unique, inverse = np.unique(key[defined], axis=0, return_inverse=True)
        u1, m1, u2, m2 = unique.T
        z = _z(confidence)
        estimate = u1 / m1 - u2 / m2
        # Both limits in one bisection over [lower; upper] halves: the lower limit is the
        # smallest delta in [-1, estimate] with statistic <= z, the upper the largest in
        # [estimate, 1] with statistic >= -z; the statistic decreases in delta.
        size = estimate.size
        test = _ScoreTest(*(np.concatenate([a, a]) for a in (u1, m1, u2, m2)))
        inner = np.concatenate([estimate, estimate])  # always accepted
        outer = np.concatenate([np.full(size, -1.0), np.full(size, 1.0)])
        sign = np.concatenate([np.ones(size), -np.ones(size)])  # lower: stat <= z
        for _ in range(iterations):
            middle = (inner + outer) / 2
            accepted = sign * test.statistic(middle) <= z
            inner = np.where(accepted, middle, inner)
            outer = np.where(accepted, outer, middle)
        at_ends = sign * test.statistic(np.concatenate([np.full(size, -1.0), np.ones(size)]))
        limits = np.where(at_ends <= z, np.concatenate([np.full(size, -1.0), np.ones(size)]), inner)
        unique_low, unique_high = limits[:size], limits[size:]
        low[defined] = unique_low[inverse.reshape(-1)]
        high[defined] = unique_high[inverse.reshape(-1)]
    return low.reshape(shape), high.reshape(shape)


# ---------------------------------------------------------------------------------------
# Influence: Newcombe's interval from per-group tables, tile by tile.


class _WidthTables:
    """For each distinct count n, (p - low)^2 and (high - p)^2 of x = 0..n, concatenated.

    Newcombe's limits are the estimate minus / plus the root of a sum of two such squared
    widths, one per group, so a [T, N] matrix of intervals costs four table lookups per
    entry: the tables (sum of (n + 1) over the distinct counts) stay in cache.
    """

    def __init__(self, counts: np.ndarray, confidence: float):
        distinct, self.which = np.unique(counts, return_inverse=True)
        sizes = distinct + 1
        self.offset_of_distinct = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        x = np.concatenate([np.arange(size) for size in sizes]).astype(np.float64)
        n = np.repeat(distinct, sizes).astype(np.float64)
        low, high = binomial_interval(x, n, confidence)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = x / n
        self.below = ((p - low) ** 2).astype(np.float32)  # NaN rows for n = 0
        self.above = ((high - p) ** 2).astype(np.float32)
        self.offset = self.offset_of_distinct[self.which.reshape(-1)]
        self.counts = np.asarray(counts, dtype=np.int64)


def _influence_limits(
    values: np.ndarray,
    columns: np.ndarray,
    correct: np.ndarray,
    tables: _InfluenceTables,
) -> tuple[np.ndarray, np.ndarray]:
    """Limits for influence `values` [rows, width] whose training examples are `columns`.

    The successes behind each value are recovered exactly from the float32 estimate:
    S = infl * n_in * n_out / R + c * n_in / R is an integer, and float32 rounding moves
    it by far less than 1/2 (below 1e-3 even at 46 340 runs). float32 and int32 all the
    way, a few passes per entry: this is the cost that must stay near the estimate's.
    """
    # A NaN estimate (a column without runs on one side) stays NaN through `values -+
    # width`; its garbage count is clipped into the table and never seen.
    successes = values * tables.scale[columns]
    successes += correct[:, None] * tables.per_correct[columns]
    np.rint(successes, out=successes)
    with np.errstate(invalid="ignore"):
        hits = successes.astype(np.int32)
    np.clip(hits, 0, tables.count_in[columns], out=hits)
    misses = correct.astype(np.int32)[:, None] - hits  # held-out runs that got it right
    np.clip(misses, 0, tables.count_out[columns], out=misses)
    if tables.mee is not None:
        hits *= tables.mee.stride[columns]
        hits += misses
        hits += tables.mee.offset[columns]
        both = tables.mee.pairs[hits].view(np.float32).reshape(*hits.shape, 2)
        nan = np.isnan(values)
        low, high = np.where(nan, np.nan, both[..., 0]), np.where(nan, np.nan, both[..., 1])
        return low.astype(np.float32, copy=False), high.astype(np.float32, copy=False)
    hits += tables.in_offset[columns]
    misses += tables.out_offset[columns]
    # One 8-byte gather per group fetches both squared widths (half the gathers).
    inside = tables.in_pairs[hits].view(np.float32).reshape(*hits.shape, 2)
    outside = tables.out_pairs[misses].view(np.float32).reshape(*misses.shape, 2)
    low = np.add(inside[..., 0], outside[..., 1])  # below p_in, above p_out
    high = np.add(inside[..., 1], outside[..., 0])
    np.sqrt(low, out=low)
    np.sqrt(high, out=high)
    np.subtract(values, low, out=low)
    np.add(values, high, out=high)
    np.clip(low, -1.0, 1.0, out=low)  # NaN stays NaN
    np.clip(high, -1.0, 1.0, out=high)
    return low, high


class _InfluenceTables:
    """Per training example: what turns its influence column into intervals."""

    def __init__(self, count_in: np.ndarray, count_out: np.ndarray, confidence: float):
        runs = (count_in + count_out).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = count_in * count_out / runs
            per_correct = count_in / runs
        defined = (count_in > 0) & (count_out > 0)
        self.scale = np.where(defined, scale, 0.0).astype(np.float32)
        self.per_correct = np.where(defined, per_correct, 0.0).astype(np.float32)
        self.count_in = count_in.astype(np.int32)
        self.count_out = count_out.astype(np.int32)
        inside, outside = _WidthTables(count_in, confidence), _WidthTables(count_out, confidence)
        self.in_offset = inside.offset.astype(np.int32)
        self.out_offset = outside.offset.astype(np.int32)
        self.in_pairs = _paired(inside.below, inside.above)
        self.out_pairs = _paired(outside.below, outside.above)
        self.mee = _MeeTable.if_small(count_in, count_out, confidence)


def _paired(below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """float64 view of interleaved float32 (below, above): both in one gather."""
    return np.ascontiguousarray(np.stack([below, above], axis=1)).view(np.float64).reshape(-1)


class _MeeTable:
    """Mee's (low, high) for every count pair (x_in, x_out) of each distinct (n_in, n_out).

    Entry x_in * (n_out + 1) + x_out of a group's block, from `offset[j]` for training
    example j; both limits interleaved as one float64 per pair, fetched in one gather.
    """

    def __init__(self, count_in, count_out, distinct, which, confidence: float):
        sizes = (distinct[:, 0] + 1) * (distinct[:, 1] + 1)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        x_in = np.concatenate([np.repeat(np.arange(a + 1), b + 1) for a, b in distinct])
        x_out = np.concatenate([np.tile(np.arange(b + 1), a + 1) for a, b in distinct])
        n_in = np.repeat(distinct[:, 0], sizes)
        n_out = np.repeat(distinct[:, 1], sizes)
        low, high = mee_interval(x_in, n_in, x_out, n_out, confidence, iterations=24)
        self.pairs = _paired(low.astype(np.float32), high.astype(np.float32))
        self.offset = starts[which.reshape(-1)].astype(np.int32)
        self.stride = (count_out + 1).astype(np.int32)

    @classmethod
    def if_small(cls, count_in: np.ndarray, count_out: np.ndarray, confidence: float):
        """The table, or None when it would hold more than `MEE_TABLE_ENTRIES` pairs."""
        distinct, which = np.unique(
            np.stack([count_in, count_out], axis=1), axis=0, return_inverse=True
        )
        if int(((distinct[:, 0] + 1) * (distinct[:, 1] + 1)).sum()) > MEE_TABLE_ENTRIES:
            return None
        return cls(count_in, count_out, distinct, which, confidence)


def influence_intervals(
    influence: Influence,
    test_correct_count: np.ndarray,
    confidence: float = 0.95,
    tile_elements: int = 1 << 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Intervals beside dense or top-k influence estimates, row block by row block.

    Mee's score intervals where the table of every count pair has at most
    `MEE_TABLE_ENTRIES` entries, Newcombe's hybrid score intervals above (module docstring).

    Args:
      influence: the estimates (`heldout.scores.influence`).
      test_correct_count: int [T]: runs (of those behind `influence`) that got each test
        example right.
      confidence: e.g. 0.95.
      tile_elements: entries per block (bounds the temporaries: ~40 bytes an entry).

    Returns:
      (low, high) float32, shaped like `influence.matrix` or `influence.topk_value`; NaN
      where the estimate is NaN.
    """
    confidence = check_confidence(confidence)
    correct = np.asarray(test_correct_count, dtype=np.float32)
    values = influence.topk_value if influence.is_topk else influence.matrix
    if values.shape[0] != correct.size:
        raise ScoresError(
            f"test_correct_count has {correct.size} entries; the influence has "
            f"{values.shape[0]} test examples"
        )
    tables = _InfluenceTables(
        np.asarray(influence.count_in, dtype=np.int64),
        np.asarray(influence.count_out, dtype=np.int64),
        confidence,
    )
    low = np.empty(values.shape, dtype=np.float32)
    high = np.empty(values.shape, dtype=np.float32)
    rows_per_block = max(1, tile_elements // max(1, values.shape[1]))
    all_columns = np.arange(values.shape[1])[None, :]
    for start in range(0, values.shape[0], rows_per_block):
        rows = slice(start, min(start + rows_per_block, values.shape[0]))
        block = np.asarray(values[rows], dtype=np.float32)
        if influence.is_topk:
            columns = np.maximum(influence.topk_index[rows], 0)
        else:
            columns = all_columns
        low[rows], high[rows] = _influence_limits(block, columns, correct[rows], tables)
    return low, high


class CorrectTestCounts:
    """Counts, run by run, how often each test example was right (influence intervals).

    The influence estimate keeps only S / n_in - (c - S) / n_out; with c, the count of
    runs that got the test example right, the integer S behind it comes back exactly.
    """

    def __init__(self) -> None:
        self.num_runs = 0
        self.counts: np.ndarray | None = None  # int64 [T]

    def add(self, aux) -> None:
        correct = aux.test_correctness()
        if self.counts is None:
            self.counts = np.zeros(correct.size, dtype=np.int64)
        self.counts += correct
        self.num_runs += 1


# ---------------------------------------------------------------------------------------
# All intervals of a scores file.


def _successes(proportion: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The integer numerator behind a proportion of `count` runs (0 where undefined)."""
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(np.rint(proportion * count), nan=0.0)


def score_intervals(
    confidence: float,
    cscores: CScores | None = None,
    memorization: Memorization | None = None,
    influence: Influence | None = None,
    test_correct_count: np.ndarray | None = None,
) -> ScoreIntervals:
    """Intervals for whichever estimates are given, from their counts.

    Args:
      confidence: nominal coverage in (0, 1).
      cscores, memorization, influence: results of the score engine (any may be None).
      test_correct_count: needed with `influence`: runs that got each test example right.

    Raises:
      UsageError: a confidence outside (0, 1).
      ScoresError: influence without `test_correct_count`.
    """
    confidence = check_confidence(confidence)
    fields: dict[str, np.ndarray] = {}
    if cscores is not None:
        count = cscores.heldout_count_by_ratio
        successes = _successes(cscores.cscore_by_ratio, count)
        low, high = binomial_interval(successes, count, confidence)
        fields.update(cscore_by_ratio_low=low, cscore_by_ratio_high=high)
        low, high = mean_of_proportions_interval(successes, count, confidence)
        fields.update(cscore_low=low, cscore_high=high)
    if memorization is not None:
        m = memorization
        low, high = mee_interval(
            _successes(m.p_correct_in, m.count_in),
            m.count_in,
            _successes(m.p_correct_out, m.count_out),
            m.count_out,
            confidence,
        )
        fields.update(memorization_low=low, memorization_high=high)
    if influence is not None:
        if test_correct_count is None:
            raise ScoresError("influence intervals need the test examples' correct counts")
        low, high = influence_intervals(influence, test_correct_count, confidence)
        fields.update(influence_low=low, influence_high=high)
    return ScoreIntervals(confidence=confidence, **fields)
