"""Influence of training examples on test examples, from runs of one subset ratio.

    infl[t, j] = P(test t correct | j trained) - P(test t correct | j held out)

With `T` the runs' test correctness `[R, N_test]` and `M` their training masks `[R, N]`
(both 0/1), the only product needed is `S = T^T M`: runs that had j in and got t right.
The held-out side follows from column sums, `T^T (1 - M) = c - S` with `c = colsum(T)`,
so we do half the matrix work of the two masked products in the published example. With
`n_in = colsum(M)` and `n_out = R - n_in`:

    infl = S / n_in - (c - S) / n_out = (R * S - c * n_in) / (n_in * n_out)

The numerator is an integer. Every partial sum of it stays below R^2, so float32
arithmetic (exact for integers up to 2^24) computes it exactly for up to 4096 runs, and
then also independently of run order; beyond that it is within float32 rounding. The
only rounding is the final division. Where n_in or n_out is 0 the influence is NaN.

Runs are kept packed 8 examples to a byte (`_PackedRuns`) and multiplied as float32
tiles, one GEMM per tile. Two modes:
- dense (`DenseInfluenceAccumulator`): `float32 [N_test, N]` (2 GB for CIFAR's
  10 000 x 50 000), accumulated from bounded blocks of packed runs; the result is the
  only large array;
- top-k (`TopKInfluenceAccumulator`): the k largest influences per test example. The
  dense matrix never exists: every run is kept packed, and at the end the matrix is
  produced tile by tile, each tile merged into a running top-k per row and dropped.
  ImageNet (1 281 167 x 50 000, 256 GB dense) takes a few hundred MB for a few hundred
  runs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

import numpy as np

from heldout.aux_arrays import AuxArrays
from heldout.errors import InconsistentRunError, ScoresError, UsageError


class InfluenceTooLargeError(ScoresError, MemoryError):
    """A dense influence matrix that would not fit in memory (use the top-k mode)."""


_MiB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Influence:
    """Influence estimates at one subset ratio; one of `matrix` or the top-k pair is set.

    Attributes:
      subset_ratio: the ratio of the runs used (None when not given).
      num_runs: R, runs accumulated.
      count_in / count_out: int32 [N]: runs with each training example in / held out;
        the estimate for column j averages count_in[j] and count_out[j] runs.
      matrix: float32 [N_test, N] (dense mode), NaN in columns with count_in or count_out 0.
      topk_index: int64 [N_test, k]: training examples, most influential first; -1 where
        fewer than k training examples have a defined (non-NaN) influence.
      topk_value: float32 [N_test, k]: their influence, NaN where the index is -1. "Most
        influential" means the largest (most helpful) influence, as in the published
        high-influence pairs.
    """

    subset_ratio: float | None
    num_runs: int
    count_in: np.ndarray
    count_out: np.ndarray
    matrix: np.ndarray | None = None
    topk_index: np.ndarray | None = None
    topk_value: np.ndarray | None = None

    @property
    def is_topk(self) -> bool:
        return self.topk_index is not None


class _PackedRuns:
    """Runs kept compactly: each training mask and test correctness packed 8 to a byte.

    A CIFAR run takes 7.5 KB this way (32 times less than float32), an ImageNet run
    166 KB. Rows are preallocated and the storage doubles when full. Slices handed out
    start at multiples of 8, so they unpack from whole bytes.
    """

    def __init__(self, num_train: int, num_test: int, capacity: int = 64):
        self.num_train, self.num_test = num_train, num_test
        self._masks = np.empty((capacity, (num_train + 7) // 8), dtype=np.uint8)
        self._tests = np.empty((capacity, (num_test + 7) // 8), dtype=np.uint8)
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size == len(self._masks)

    def append(self, mask: np.ndarray, test_correct: np.ndarray) -> None:
        if self.full:
            self._masks = np.concatenate([self._masks, np.empty_like(self._masks)])
            self._tests = np.concatenate([self._tests, np.empty_like(self._tests)])
        self._masks[self.size] = np.packbits(mask)
        self._tests[self.size] = np.packbits(test_correct)
        self.size += 1

    def clear(self) -> None:
        self.size = 0

    def masks(self, columns: slice) -> np.ndarray:
        """uint8 [size, width] 0/1: the training masks of the columns."""
        return _unpack(self._masks[: self.size], columns)

    def tests(self, rows: slice) -> np.ndarray:
        """uint8 [size, height] 0/1: the test correctness of the rows."""
        return _unpack(self._tests[: self.size], rows)


def _unpack(packed: np.ndarray, part: slice) -> np.ndarray:
    assert part.start % 8 == 0, "slices start on whole bytes"
    width = part.stop - part.start
    return np.unpackbits(packed[:, part.start // 8 : (part.stop + 7) // 8], axis=1, count=width)


def _tiles_of(shape: tuple[int, int], tile_rows: int, tile_columns: int):
    """(rows, columns) slices covering a matrix, column block by column block."""
    num_rows, num_columns = shape
    for j0 in range(0, num_columns, tile_columns):
        columns = slice(j0, min(j0 + tile_columns, num_columns))
        for i0 in range(0, num_rows, tile_rows):
            yield slice(i0, min(i0 + tile_rows, num_rows)), columns


def _check_tiles(tile_test: int, tile_train: int) -> None:
    if tile_test < 8 or tile_train < 8 or tile_test % 8 or tile_train % 8:
        raise UsageError(
            f"tile sizes must be positive multiples of 8 (runs are stored 8 examples to a "
            f"byte), got tile_test={tile_test}, tile_train={tile_train}"
        )


class _InfluenceCounts:
    """What both modes share: R, colsum(M), colsum(T) and the compactly stored runs."""

    def __init__(self, subset_ratio: float | None):
        self.subset_ratio = subset_ratio
        self.num_runs = 0
        self.num_train: int | None = None
        self.num_test: int | None = None
        self.count_in: np.ndarray | None = None  # int32 [N]
        self.test_correct_count: np.ndarray | None = None  # int32 [N_test], c
        self._runs: _PackedRuns | None = None
        self._taken = False  # result() hands over or drops the buffers: one result only

    def _new_store(self) -> _PackedRuns:
        return _PackedRuns(self.num_train, self.num_test)

    def add(self, aux: AuxArrays) -> None:
        """Counts one run and stores it compactly."""
        if self._taken:
            raise ValueError("result() was already taken from this accumulator")
        if self.num_train is None:
            self.num_train, self.num_test = aux.num_train, aux.num_test
            self.count_in = np.zeros(self.num_train, dtype=np.int32)
            self.test_correct_count = np.zeros(self.num_test, dtype=np.int32)
            self._runs = self._new_store()
        elif (aux.num_train, aux.num_test) != (self.num_train, self.num_test):
            raise InconsistentRunError(
                f"{aux.source}: has N={aux.num_train}, N_test={aux.num_test}; earlier runs "
                f"have N={self.num_train}, N_test={self.num_test}"
            )
        mask, test_correct = aux.train_mask(), aux.test_correctness()
        self.count_in += mask
        self.test_correct_count += test_correct
        self.num_runs += 1
        self._runs.append(mask, test_correct)

    def _start_result(self) -> None:
        if self._taken:
            raise ValueError("result() was already taken from this accumulator")
        if self.num_runs == 0:
            raise ScoresError("no runs were added; influence needs at least one run")
        self._taken = True

    def _column_scale(self) -> np.ndarray:
        """float32 [N]: 1 / (n_in * n_out), NaN where either count is 0."""
        count_in = self.count_in.astype(np.float64)
        count_out = self.num_runs - count_in
        with np.errstate(divide="ignore"):
            scale = 1.0 / (count_in * count_out)
        scale[~np.isfinite(scale)] = np.nan
        return scale.astype(np.float32)

    def _result(self, **fields) -> Influence:
        self._runs = None
        return Influence(
            subset_ratio=self.subset_ratio,
            num_runs=self.num_runs,
            count_in=self.count_in.copy(),
            count_out=(self.num_runs - self.count_in).astype(np.int32),
            **fields,
        )


class DenseInfluenceAccumulator(_InfluenceCounts):
    """Streams runs into the dense influence matrix `float32 [N_test, N]`.

    Runs are stored packed (`_PackedRuns`) up to `block_bytes`; a full block is added to
    `S` tile by tile, each tile one float32 GEMM with the block's runs as the inner
    dimension, so memory is bounded whatever the number of runs. The first block writes
    `S` directly and the last one also turns each tile into influence while it is in
    cache: with up to ~2 200 CIFAR runs (one block) every entry is written once. The only
    large array is the result itself; the rest is a few tens of MB.

    Args:
      subset_ratio: recorded in the result.
      block_bytes: packed runs held before adding them to S ((N + N_test) / 8 bytes a run).
      tile_test, tile_train: tile of `S` per GEMM; multiples of 8. The defaults (1024 x
        4096) keep the GEMM efficient with small temporaries.
      max_matrix_bytes: refuse (with a hint to use top-k) matrices larger than this;
        default: the machine's physical memory.
    """

    def __init__(
        self,
        subset_ratio: float | None = None,
        block_bytes: int = 16 * _MiB,
        tile_test: int = 1024,
        tile_train: int = 4096,
        max_matrix_bytes: int | None = None,
    ):
        super().__init__(subset_ratio)
        _check_tiles(tile_test, tile_train)
        self.block_bytes = block_bytes
        self.tile_test = tile_test
        self.tile_train = tile_train
        self.max_matrix_bytes = max_matrix_bytes or _physical_memory_bytes()
        self._sums: np.ndarray | None = None  # S, float32 [N_test, N]

    def _new_store(self) -> _PackedRuns:
        needed = 4 * self.num_train * self.num_test
        if needed > self.max_matrix_bytes:
            raise InfluenceTooLargeError(
                f"a dense influence matrix of {self.num_test} x {self.num_train} needs "
                f"{needed / 2**30:.1f} GiB, more than the {self.max_matrix_bytes / 2**30:.1f} "
                "GiB allowed; use the top-k mode (--influence_topk K) instead"
            )
        per_run = (self.num_train + 7) // 8 + (self.num_test + 7) // 8
        return _PackedRuns(self.num_train, self.num_test, max(1, self.block_bytes // per_run))

    def add(self, aux: AuxArrays) -> None:
        super().add(aux)
        if self._runs.full:
            self._flush()

    def _flush(self) -> None:
        """S += T_block^T M_block, tile by tile."""
        first = self._sums is None
        if first:  # every entry is written by the first block: no need to zero it
            self._sums = np.empty((self.num_test, self.num_train), dtype=np.float32)
        buffer = self._tile_buffer()
        masks, masks_of = None, None
        for rows, columns in _tiles_of(self._sums.shape, self.tile_test, self.tile_train):
            if masks_of != columns:  # tiles come column-major: unpack each slice once
                masks, masks_of = self._runs.masks(columns).astype(np.float32), columns
            tests = self._runs.tests(rows).astype(np.float32).T
            tile = self._sums[rows, columns]
            if first:
                np.matmul(tests, masks, out=tile)
            else:
                tile += np.matmul(tests, masks, out=buffer[: tile.shape[0], : tile.shape[1]])
        self._runs.clear()

    def _tile_buffer(self) -> np.ndarray:
        shape = (min(self.tile_test, self.num_test), min(self.tile_train, self.num_train))
        return np.empty(shape, dtype=np.float32)

    def result(self) -> Influence:
        """The dense matrix; the accumulator hands its memory over and is spent.

        The runs still stored go through the same GEMM as in `TopKInfluenceAccumulator`,
        which yields R * S_block - c * n_in directly; with earlier blocks already in S,
        each tile becomes R * S + that product. Either way each tile is then scaled by
        1 / (n_in * n_out) while it is still in cache.
        """
        self._start_result()
        first = self._sums is None
        if first:
            self._sums = np.empty((self.num_test, self.num_train), dtype=np.float32)
        count_in = self.count_in.astype(np.float32)
        scale = self._column_scale()
        buffer = self._tile_buffer()
        masks, masks_of = None, None
        for rows, columns in _tiles_of(self._sums.shape, self.tile_test, self.tile_train):
            if masks_of != columns:
                masks, masks_of = (
                    _numerator_masks(self._runs, columns, self.num_runs, count_in),
                    columns,
                )
            tests = _numerator_tests(self._runs, rows, self.test_correct_count)
            tile = self._sums[rows, columns]
            if first:
                np.matmul(tests, masks, out=tile)
            else:
                tile *= np.float32(self.num_runs)
                tile += np.matmul(tests, masks, out=buffer[: tile.shape[0], : tile.shape[1]])
            tile *= scale[columns]
        matrix, self._sums = self._sums, None
        return self._result(matrix=matrix)


def _numerator_masks(
    runs: _PackedRuns, columns: slice, num_runs: int, count_in: np.ndarray
) -> np.ndarray:
    """[stored + 1, width] float32: R * M of the stored runs, then -n_in (all exact)."""
    masks = np.empty((runs.size + 1, columns.stop - columns.start), dtype=np.float32)
    masks[:-1] = runs.masks(columns)
    masks[:-1] *= num_runs
    masks[-1] = -count_in[columns]
    return masks


def _numerator_tests(runs: _PackedRuns, rows: slice, correct_count: np.ndarray) -> np.ndarray:
    """[height, stored + 1] float32: the stored runs' test correctness, then c."""
    tests = np.empty((rows.stop - rows.start, runs.size + 1), dtype=np.float32)
    tests[:, :-1] = runs.tests(rows).T
    tests[:, -1] = correct_count[rows]
    return tests


class TopKInfluenceAccumulator(_InfluenceCounts):
    """The k largest influences per test example, without the dense matrix.

    `add` keeps every run packed (`_PackedRuns`; ImageNet: 166 KB a run). `result` then
    walks the matrix in tiles of `tile_test` x `tile_train`: one float32 GEMM over all
    runs per tile (the numerator R*S - c*n_in comes out of a single product by appending
    c and -n_in as one extra "run"), a scale by 1 / (n_in * n_out), and a merge of the
    values above each row's running k-th best into its top-k. After the first tiles few
    values pass that threshold, so merging costs little beside the GEMM.

    Args:
      k: how many training examples to keep per test example.
      subset_ratio: recorded in the result.
      tile_test, tile_train: tile shape, multiples of 8; the defaults (2048 x 8192, a
        64 MiB tile) keep the GEMM efficient and the peak memory small.
    """

    def __init__(
        self,
        k: int,
        subset_ratio: float | None = None,
        tile_test: int = 2048,
        tile_train: int = 8192,
    ):
        super().__init__(subset_ratio)
        if k < 1:
            raise UsageError(f"k must be at least 1, got {k}")
        _check_tiles(tile_test, tile_train)
        self.k = k
        self.tile_test = tile_test
        self.tile_train = tile_train

    def result(self) -> Influence:
        """The top-k per test example; the accumulator drops its runs and is spent."""
        self._start_result()
        runs, n, n_test = self.num_runs, self.num_train, self.num_test
        # [N_test, R + 1]: each test example's correctness over runs, then c.
        tests = _numerator_tests(self._runs, slice(0, n_test), self.test_correct_count)
        count_in = self.count_in.astype(np.float32)
        scale = self._column_scale()
        top = _RunningTopK(n_test, self.k)
        tile = np.empty((min(self.tile_test, n_test), min(self.tile_train, n)), np.float32)
        masks, masks_of = None, None
        for rows, columns in _tiles_of((n_test, n), self.tile_test, self.tile_train):
            if masks_of != columns:  # tiles come column-major: unpack each slice once
                masks, masks_of = _numerator_masks(self._runs, columns, runs, count_in), columns
            values = tile[: rows.stop - rows.start, : columns.stop - columns.start]
            np.matmul(tests[rows], masks, out=values)
            values *= scale[columns]
            top.merge(rows.start, columns.start, values)
        index, value = top.finish()
        return self._result(topk_index=index, topk_value=value)


class _RunningTopK:
    """Per row, the k largest values seen so far (NaN never counts) and their columns."""

    def __init__(self, num_rows: int, k: int):
        self.k = k
        self.values = np.full((num_rows, k), -np.inf, dtype=np.float32)
        self.index = np.full((num_rows, k), -1, dtype=np.int64)
        # A value enters a row's top-k only if it beats the row's current k-th best.
        self.threshold = np.full(num_rows, -np.inf, dtype=np.float32)

    def merge(self, row0: int, col0: int, tile: np.ndarray) -> None:
        """Merges tile (rows row0.., columns col0..; overwritten) into the running top-k."""
        rows = slice(row0, row0 + tile.shape[0])
        above = tile > self.threshold[rows, None]  # False for NaN
        num_above = np.count_nonzero(above)
        if num_above == 0:
            return
        if num_above > 2 * self.k * tile.shape[0]:
            cand_values, cand_index = self._tile_topk(tile, col0)
        else:
            cand_values, cand_index = self._gather(tile, above, col0)
        values = np.concatenate([self.values[rows], cand_values], axis=1)
        index = np.concatenate([self.index[rows], cand_index], axis=1)
        best = np.argpartition(-values, self.k - 1, axis=1)[:, : self.k]
        self.values[rows] = np.take_along_axis(values, best, axis=1)
        self.index[rows] = np.take_along_axis(index, best, axis=1)
        self.threshold[rows] = self.values[rows].min(axis=1)

    def _tile_topk(self, tile: np.ndarray, col0: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's top-k of a whole tile (used while thresholds are still low)."""
        kk = min(self.k, tile.shape[1])
        np.negative(tile, out=tile)  # argpartition puts NaN last, so take the smallest
        index = np.argpartition(tile, kk - 1, axis=1)[:, :kk]
        values = -np.take_along_axis(tile, index, axis=1)
        missing = np.isnan(values)
        values[missing] = -np.inf
        index += col0
        index[missing] = -1
        return values, index

    def _gather(
        self, tile: np.ndarray, above: np.ndarray, col0: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The values above threshold, packed to the left of a [rows, max count] array."""
        # flatnonzero: 10x faster than a 2-D nonzero on a tile that is mostly False.
        row, col = np.divmod(np.flatnonzero(above), above.shape[1])
        per_row = np.bincount(row, minlength=tile.shape[0])
        first = np.cumsum(per_row) - per_row
        slot = np.arange(row.size) - first[row]
        width = int(per_row.max())
        values = np.full((tile.shape[0], width), -np.inf, dtype=np.float32)
        index = np.full((tile.shape[0], width), -1, dtype=np.int64)
        values[row, slot] = tile[row, col]
        index[row, slot] = col + col0
        return values, index

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(index, value) sorted by decreasing value; padding becomes (-1, NaN)."""
        order = np.argsort(-self.values, axis=1, kind="stable")
        values = np.take_along_axis(self.values, order, axis=1)
        index = np.take_along_axis(self.index, order, axis=1)
        missing = ~np.isfinite(values)
        values[missing] = np.nan
        index[missing] = -1
        return index, values


def influence_accumulator(
    topk: int = 0, subset_ratio: float | None = None, **options
) -> DenseInfluenceAccumulator | TopKInfluenceAccumulator:
    """The dense accumulator for `topk=0`, else the top-k one; options go to either."""
    if topk < 0:
        raise UsageError(f"topk must be 0 (dense) or positive, got {topk}")
    if topk == 0:
        return DenseInfluenceAccumulator(subset_ratio, **options)
    return TopKInfluenceAccumulator(topk, subset_ratio, **options)


def compute_influence(
    runs: Iterable[AuxArrays], topk: int = 0, subset_ratio: float | None = None, **options
) -> Influence:
    """Influence from runs of one subset ratio (dense, or top-k per test example)."""
    accumulator = influence_accumulator(topk, subset_ratio, **options)
    for aux in runs:
        accumulator.add(aux)
    return accumulator.result()


def _physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40
