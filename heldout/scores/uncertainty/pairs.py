"""Significant (training, test) influence pairs, with the false-discovery rate controlled.

Every pair at the score ratio gets the exact one-sided p-value of Fisher's test for
"influence > 0" (`hypergeometric`), and Benjamini-Hochberg selects pairs at the requested
FDR, optionally among training examples with memorization >= a minimum. Tile by tile, in
bounded memory: only candidate pairs (above a per-margin critical count) get exact
p-values. The algorithm and its bounds: docs/methods.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np

from heldout.errors import InconsistentRunError, ScoresError, UsageError
from heldout.release.aux_arrays import AuxArrays
from heldout.scores.results import SignificantPairs
from heldout.scores.uncertainty import hypergeometric as hg

__all__ = [
    "SignificantPairs",
    "SignificantPairsAccumulator",
    "benjamini_hochberg",
    "compute_influence_pairs",
    "q_values_of",
]

_BINS_PER_DECADE = 50
_LOWEST_LOG_P = -800.0  # natural log; p-values below share the histogram's last bin


def benjamini_hochberg(
    log_p: np.ndarray, num_tests: int, fdr: float
) -> tuple[np.ndarray, np.ndarray]:
    """BH at `fdr` over `num_tests` tests of which `log_p` holds (at least) the smallest.

    Returns:
      (selected indices into log_p, most significant first; their q-values).
    """
    if log_p.size == 0 or num_tests == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    order = np.argsort(log_p, kind="stable")
    ranks = np.arange(1, order.size + 1, dtype=np.float64)
    log_q = log_p[order] + math.log(num_tests) - np.log(ranks)
    passing = np.flatnonzero(log_q <= math.log(fdr))
    if passing.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    count = passing[-1] + 1
    running = np.minimum.accumulate(log_q[::-1])[::-1][:count]
    return order[:count], np.exp(np.minimum(running, 0.0))


class _Runs:
    """Training masks and test correctness packed 8 examples to a byte, growing."""

    def __init__(self, num_train: int, num_test: int):
        self._masks = np.empty((64, (num_train + 7) // 8), np.uint8)
        self._tests = np.empty((64, (num_test + 7) // 8), np.uint8)
        self.size = 0

    def append(self, mask: np.ndarray, test_correct: np.ndarray) -> None:
        if self.size == len(self._masks):
            self._masks = np.concatenate([self._masks, np.empty_like(self._masks)])
            self._tests = np.concatenate([self._tests, np.empty_like(self._tests)])
        self._masks[self.size] = np.packbits(mask)
        self._tests[self.size] = np.packbits(test_correct)
        self.size += 1

    def bits(self, which: str, index: np.ndarray) -> np.ndarray:
        """uint8 [runs, len(index)]: the bits of the given examples ("masks": training
        examples trained on; "tests": test examples right), unpacked one by one."""
        packed = (self._masks if which == "masks" else self._tests)[: self.size]
        return (packed[:, index // 8] >> (7 - index % 8).astype(np.uint8)) & 1

    def masks(self, start: int, stop: int) -> np.ndarray:
        """float32 [runs, stop - start]; start a multiple of 8."""
        return _unpack(self._masks[: self.size], start, stop).astype(np.float32)

    def tests(self, start: int, stop: int) -> np.ndarray:
        """float32 [stop - start, runs]; start a multiple of 8."""
        return _unpack(self._tests[: self.size], start, stop).T.astype(np.float32)


def _unpack(packed: np.ndarray, start: int, stop: int) -> np.ndarray:
    bits = packed[:, start // 8 : (stop + 7) // 8]
    return np.unpackbits(bits, axis=1, count=stop - start)


@dataclasses.dataclass
class _Candidates:
    """Pairs that may be selected: their indices, S and a lower bound of log p."""

    test: list[np.ndarray] = dataclasses.field(default_factory=list)
    train: list[np.ndarray] = dataclasses.field(default_factory=list)
    successes: list[np.ndarray] = dataclasses.field(default_factory=list)
    bound: list[np.ndarray] = dataclasses.field(default_factory=list)
    size: int = 0

    def add(self, test, train, successes, bound) -> None:
        self.test.append(test)
        self.train.append(train)
        self.successes.append(successes)
        self.bound.append(bound)
        self.size += test.size

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        def joined(parts, dtype):
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        return (
            joined(self.test, np.int64),
            joined(self.train, np.int64),
            joined(self.successes, np.int64),
            joined(self.bound, np.float64),
        )

    def keep(self, limit: float) -> None:
        """Drops the candidates whose bound is above `limit`."""
        test, train, successes, bound = self.arrays()
        kept = bound <= limit
        self.test, self.train = [test[kept]], [train[kept]]
        self.successes, self.bound = [successes[kept]], [bound[kept]]
        self.size = int(kept.sum())


class SignificantPairsAccumulator:
    """Streams runs of one subset ratio; `result()` selects the significant pairs.

    Args:
      subset_ratio: recorded in the result.
      fdr: the false-discovery rate, in (0, 1); default 0.05.
      min_memorization: test only training examples with memorization >= this (None:
        all).
      tile_test, tile_train: tile of S per GEMM (multiples of 8).
      max_candidates: candidates held in the first pass before the keep bound is lowered.
    """

    def __init__(
        self,
        subset_ratio: float | None = None,
        fdr: float = 0.05,
        min_memorization: float | None = None,
        tile_test: int = 1024,
        tile_train: int = 4096,
        max_candidates: int = 1 << 22,
    ):
        if not 0.0 < fdr < 1.0:
            raise UsageError(f"the false-discovery rate must be between 0 and 1, got {fdr}")
        if tile_test < 8 or tile_train < 8 or tile_test % 8 or tile_train % 8:
            raise UsageError(
                f"tile sizes must be positive multiples of 8, got {tile_test}, {tile_train}"
            )
        if max_candidates < 2:
            raise UsageError(f"max_candidates must be at least 2, got {max_candidates}")
        if min_memorization is not None and not math.isfinite(min_memorization):
            # NaN would test no pair at all and report "0 selected" as if it were a result.
            raise UsageError(f"min_memorization must be a finite number, got {min_memorization}")
        self.subset_ratio = subset_ratio
        self.fdr = float(fdr)
        self.min_memorization = None if min_memorization is None else float(min_memorization)
        self.tile_test, self.tile_train = tile_test, tile_train
        self.max_candidates = max_candidates
        self.num_runs = 0
        self.num_train: int | None = None
        self.num_test: int | None = None
        self._runs: _Runs | None = None
        self._count_in = self._trained_correct = self._heldout_correct = None
        self._test_correct = None
        self.passes = 0  # tile passes the last result() needed (1, or 2 on overflow)

    def add(self, aux: AuxArrays) -> None:
        """Counts one run and stores it packed."""
        if self.num_train is None:
            self.num_train, self.num_test = aux.num_train, aux.num_test
            self._runs = _Runs(aux.num_train, aux.num_test)
            self._count_in = np.zeros(aux.num_train, np.int64)
            self._trained_correct = np.zeros(aux.num_train, np.int64)
            self._heldout_correct = np.zeros(aux.num_train, np.int64)
            self._test_correct = np.zeros(aux.num_test, np.int64)
        elif (aux.num_train, aux.num_test) != (self.num_train, self.num_test):
            raise InconsistentRunError(
                f"{aux.source}: has N={aux.num_train}, N_test={aux.num_test}; earlier runs "
                f"have N={self.num_train}, N_test={self.num_test}"
            )
        mask, correct = aux.train_mask(), aux.train_correctness()
        test_correct = aux.test_correctness()
        self._count_in += mask
        self._trained_correct += correct & mask
        self._heldout_correct += correct & ~mask
        self._test_correct += test_correct
        self._runs.append(mask, test_correct)
        self.num_runs += 1

    @property
    def count_in(self) -> np.ndarray | None:
        """int64 [N]: runs so far that trained on each training example (None before any)."""
        return self._count_in

    @property
    def test_correct_count(self) -> np.ndarray | None:
        """int64 [N_test]: runs so far that got each test example right (None before any)."""
        return self._test_correct

    def memorization(self) -> np.ndarray:
        """float64 [N]: p(correct | trained) - p(correct | held out); NaN where undefined."""
        count_out = self.num_runs - self._count_in
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._trained_correct / self._count_in.astype(np.float64) - (
                self._heldout_correct / count_out.astype(np.float64)
            )

    def result(self) -> SignificantPairs:
        """The selected pairs (see the module docstring for the method and its memory).

        Raises:
          ScoresError: no run was added.
        """
        if self._runs is None:
            raise ScoresError("no runs were added; influence pairs need runs")
        runs = self.num_runs
        count_in = self._count_in
        memorization = self.memorization()
        family = (count_in > 0) & (count_in < runs)
        if self.min_memorization is not None:
            with np.errstate(invalid="ignore"):
                family &= memorization >= self.min_memorization
        num_tests = int(family.sum()) * self.num_test
        log_fact = hg.log_factorials(runs)
        correct = self._test_correct
        # Critical counts per (c, n_in); columns outside the family can never pass.
        c_values, c_class = np.unique(correct, return_inverse=True)
        n_values, n_class = np.unique(count_in, return_inverse=True)
        critical = hg.critical_successes(n_values, c_values, runs, self.fdr, log_fact)
        never = runs + 1
        column_class = np.where(family, n_class.reshape(-1), n_values.size)
        critical = np.concatenate([critical, np.full((c_values.size, 1), never)], axis=1)
        row_class = c_class.reshape(-1)

        histogram = np.zeros(self._num_bins(), np.int64)
        candidates = _Candidates()
        keep = math.log(self.fdr)
        self.passes = 1
        for test, train, successes in self._candidate_pairs(critical, row_class, column_class):
            bound = hg.log_sf_lower_bound(successes, count_in[train], correct[test], runs, log_fact)
            histogram += np.bincount(self._bin_of(bound), minlength=histogram.size)
            kept = bound <= keep
            candidates.add(test[kept], train[kept], successes[kept], bound[kept])
            if candidates.size > self.max_candidates:
                keep = float(
                    np.partition(candidates.arrays()[3], self.max_candidates // 2)[
                        self.max_candidates // 2
                    ]
                )
                candidates.keep(keep)
        limit = self._threshold_bound(histogram, num_tests)
        if limit > keep:  # the buffer dropped pairs that may still be selected
            self.passes = 2
            for test, train, successes in self._candidate_pairs(critical, row_class, column_class):
                bound = hg.log_sf_lower_bound(
                    successes, count_in[train], correct[test], runs, log_fact
                )
                between = (bound > keep) & (bound <= limit)
                candidates.add(test[between], train[between], successes[between], bound[between])
        test, train, successes, bound = candidates.arrays()
        within = bound <= limit
        test, train, successes = test[within], train[within], successes[within]
        log_p = hg.log_sf(successes, count_in[train], correct[test], runs, log_fact)
        chosen, q_value = benjamini_hochberg(log_p, num_tests, self.fdr)
        test, train, successes, log_p = (
            test[chosen],
            train[chosen],
            successes[chosen],
            log_p[chosen],
        )
        n_in = count_in[train].astype(np.float64)
        influence = successes / n_in - (correct[test] - successes) / (runs - n_in)
        return SignificantPairs(
            subset_ratio=self.subset_ratio,
            num_runs=runs,
            fdr=self.fdr,
            min_memorization=self.min_memorization,
            num_tests=num_tests,
            train_index=train.astype(np.int64),
            test_index=test.astype(np.int64),
            influence=influence,
            p_value=np.exp(log_p),
            q_value=q_value,
            memorization=memorization[train],
        )

    def family_q_values(self, test_index, train_index, max_bins: int = 1 << 24):
        """Benjamini-Hochberg q-values of the given pairs over the whole family, selected
        at the FDR or not.

        One more pass over the tiles counts every pair of the family by (c, n_in, S), which
        fixes its p-value, so the rank of each distinct p-value is exact:
        q(p) = min over p' >= p of m p' / #(pairs with p-value <= p').

        Args:
          test_index, train_index: int arrays of one shape (-1: no pair).

        Returns:
          float64 shaped like `test_index`, NaN for a pair outside the family (or -1);
          None when the counts would need more than `max_bins` bins (many runs).

        Raises:
          ScoresError: no run was added.
        """
        if self._runs is None:
            raise ScoresError("no runs were added; influence pairs need runs")
        runs, count_in = self.num_runs, self._count_in
        family = (count_in > 0) & (count_in < runs)
        if self.min_memorization is not None:
            with np.errstate(invalid="ignore"):
                family &= self.memorization() >= self.min_memorization
        c_values, c_class = np.unique(self._test_correct, return_inverse=True)
        n_values, n_class = np.unique(count_in, return_inverse=True)
        width = runs + 1
        bins = c_values.size * n_values.size * width
        if bins > max_bins:
            return None
        row_code = c_class.reshape(-1).astype(np.int64) * (n_values.size * width)
        column_code = n_class.reshape(-1).astype(np.int64) * width
        histogram = np.zeros(bins, np.int64)
        for j0 in range(0, self.num_train, self.tile_train):
            j1 = min(j0 + self.tile_train, self.num_train)
            columns = np.flatnonzero(family[j0:j1])
            if columns.size == 0:
                continue
            masks = self._runs.masks(j0, j1)[:, columns]
            for t0 in range(0, self.num_test, self.tile_test):
                t1 = min(t0 + self.tile_test, self.num_test)
                code = np.matmul(self._runs.tests(t0, t1), masks).astype(np.int64)
                code += row_code[t0:t1, None]
                code += column_code[j0 + columns][None, :]
                histogram += np.bincount(code.reshape(-1), minlength=bins)
        present = np.flatnonzero(histogram)
        c_of, rest = np.divmod(present, n_values.size * width)
        n_of, successes = np.divmod(rest, width)
        log_p = hg.log_sf(successes, n_values[n_of], c_values[c_of], runs, hg.log_factorials(runs))
        order = np.argsort(log_p, kind="stable")
        at_most = np.cumsum(histogram[present[order]]).astype(np.float64)
        log_q = log_p[order] + math.log(int(family.sum()) * self.num_test) - np.log(at_most)
        q_of_code = np.full(bins, np.nan)
        q_of_code[present[order]] = np.exp(np.minimum(np.minimum.accumulate(log_q[::-1])[::-1], 0))
        return self._q_of_pairs(test_index, train_index, family, q_of_code, row_code, column_code)

    def _q_of_pairs(self, test_index, train_index, family, q_of_code, row_code, column_code):
        """Looks up each asked pair's (c, n_in, S) code, its S counted from the packed runs."""
        test_index, train_index = np.broadcast_arrays(
            np.asarray(test_index, np.int64), np.asarray(train_index, np.int64)
        )
        q = np.full(test_index.shape, np.nan)
        asked = np.flatnonzero((test_index.reshape(-1) >= 0) & (train_index.reshape(-1) >= 0))
        t, j = test_index.reshape(-1)[asked], train_index.reshape(-1)[asked]
        inside = family[j]
        asked, t, j = asked[inside], t[inside], j[inside]
        flat = q.reshape(-1)
        for start in range(0, asked.size, 1 << 16):
            part = slice(start, start + (1 << 16))
            both = self._runs.bits("tests", t[part]) & self._runs.bits("masks", j[part])
            code = row_code[t[part]] + column_code[j[part]] + both.sum(axis=0, dtype=np.int64)
            flat[asked[part]] = q_of_code[code]
        return flat.reshape(test_index.shape)

    def _candidate_pairs(self, critical, row_class, column_class):
        """Yields (test, train, S) of the pairs at or above their critical count, per tile."""
        runs = self._runs
        for j0 in range(0, self.num_train, self.tile_train):
            j1 = min(j0 + self.tile_train, self.num_train)
            columns = column_class[j0:j1]
            if not np.any(columns < critical.shape[1] - 1):
                continue  # no column of this block is in the family
            masks = runs.masks(j0, j1)
            for t0 in range(0, self.num_test, self.tile_test):
                t1 = min(t0 + self.tile_test, self.num_test)
                successes = np.matmul(runs.tests(t0, t1), masks)  # exact integers
                threshold = critical[row_class[t0:t1]][:, columns]
                rows, cols = np.nonzero(successes >= threshold)
                if rows.size:
                    yield rows + t0, cols + j0, successes[rows, cols].astype(np.int64)

    def _num_bins(self) -> int:
        width = math.log(10) / _BINS_PER_DECADE
        return int(math.ceil((math.log(self.fdr) - _LOWEST_LOG_P) / width)) + 1

    def _bin_of(self, log_p: np.ndarray) -> np.ndarray:
        """Bin b holds (log fdr - (b + 1) w, log fdr - b w]; the last one everything below."""
        width = math.log(10) / _BINS_PER_DECADE
        position = np.floor((math.log(self.fdr) - log_p) / width)
        return np.clip(position, 0, self._num_bins() - 1).astype(np.int64)

    def _threshold_bound(self, histogram: np.ndarray, num_tests: int) -> float:
        """u (a log p-value) with the BH threshold <= u, from upper bounds of F at edges."""
        width = math.log(10) / _BINS_PER_DECADE
        edges = math.log(self.fdr) - width * np.arange(histogram.size)  # E_b, decreasing
        at_most = np.cumsum(histogram[::-1])[::-1]  # upper bound of F(E_b)
        # A BH crossing within (E_{b+1}, E_b] needs F(E_b) >= m exp(E_{b+1}) / fdr.
        lower_edges = np.concatenate([edges[1:], [-np.inf]])
        possible = at_most >= num_tests * np.exp(lower_edges) / self.fdr
        possible[-1] = True  # below the last edge: keep everything that is there
        return float(edges[np.argmax(possible)])


def q_values_of(pairs: SignificantPairs, test_index, train_index) -> np.ndarray:
    """The q-value `pairs` gives each (test, train) pair; NaN for a pair it did not select.

    A pair BH did not select has a q-value above `pairs.fdr` (or was outside the family);
    -1 indices (no pair) give NaN too.

    Args:
      pairs: a selection (`compute_influence_pairs`, or a scores file's `pairs_*` arrays).
      test_index, train_index: int arrays of one shape: the pairs asked about.

    Returns:
      float64, shaped like `test_index`.
    """
    test_index, train_index = np.broadcast_arrays(
        np.asarray(test_index, np.int64), np.asarray(train_index, np.int64)
    )
    q = np.full(test_index.shape, np.nan)
    if pairs.q_value.size == 0:
        return q
    selected = (pairs.test_index.astype(np.int64) << 32) | pairs.train_index.astype(np.int64)
    order = np.argsort(selected, kind="stable")
    keys = selected[order]
    asked = (test_index << 32) | np.maximum(train_index, 0)
    where = np.minimum(np.searchsorted(keys, asked), keys.size - 1)
    hit = (keys[where] == asked) & (test_index >= 0) & (train_index >= 0)
    q[hit] = pairs.q_value[order][where[hit]]
    return q


def compute_influence_pairs(
    runs: Iterable[AuxArrays],
    subset_ratio: float | None = None,
    fdr: float = 0.05,
    min_memorization: float | None = None,
    **options,
) -> SignificantPairs:
    """Significant influence pairs from runs of one subset ratio (see the module docs)."""
    accumulator = SignificantPairsAccumulator(subset_ratio, fdr, min_memorization, **options)
    for aux in runs:
        accumulator.add(aux)
    return accumulator.result()
