"""The numpy backend: the exact reference, float32 GEMMs over runs packed 8 to a byte.

`S = T^T M` is multiplied tile by tile as float32 (exact for integer sums below 2^24, so
up to 4096 runs; beyond, within float32 rounding). Dense mode streams blocks of runs into
`S`; top-k mode keeps every run packed and merges each tile into a running top-k, so the
dense matrix never exists.
"""

from __future__ import annotations

import numpy as np

from heldout.errors import UsageError
from heldout.release.aux_arrays import AuxArrays
from heldout.scores.backends.base import (
    InfluenceCounts,
    default_max_matrix_bytes,
    finish_topk,
)
from heldout.scores.results import Influence

__all__ = [
    "NUMPY_OPTIONS",
    "DenseInfluenceAccumulator",
    "NumpyGemmBackend",
    "TopKInfluenceAccumulator",
]

_MiB = 1 << 20
NUMPY_OPTIONS = ("block_bytes", "tile_test", "tile_train")  # this backend's own options


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


class DenseInfluenceAccumulator(InfluenceCounts):
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
        self.max_matrix_bytes = max_matrix_bytes or default_max_matrix_bytes()
        self._sums: np.ndarray | None = None  # S, float32 [N_test, N]

    def _new_store(self) -> _PackedRuns:
        self._check_dense_size()
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


class TopKInfluenceAccumulator(InfluenceCounts):
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

    def _new_store(self) -> _PackedRuns:
        return _PackedRuns(self.num_train, self.num_test)

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
    """Per row, the k best values seen so far (NaN never counts) and their columns.

    "Best" is the order (value descending, column ascending), the one every backend uses,
    so ties are broken the same way everywhere. Tiles of a row arrive in increasing column
    order, so a value enters only if it is strictly above the row's current k-th value.
    """

    def __init__(self, num_rows: int, k: int):
        self.k = k
        self.values = np.full((num_rows, k), -np.inf, dtype=np.float32)
        self.index = np.full((num_rows, k), -1, dtype=np.int64)
        # A value enters a row's top-k only if it beats the row's current k-th best.
        self.threshold = np.full(num_rows, -np.inf, dtype=np.float32)

    def merge(self, row0: int, col0: int, tile: np.ndarray) -> None:
        """Merges tile (rows row0.., columns col0..) into the running top-k."""
        rows = slice(row0, row0 + tile.shape[0])
        above = tile > self.threshold[rows, None]  # False for NaN
        num_above = np.count_nonzero(above)
        if num_above == 0:
            return
        if num_above > 2 * self.k * tile.shape[0]:
            above = self._best_in_tile(tile, above)  # while thresholds are still low
        # flatnonzero rather than a 2-D nonzero (a tile is mostly False); the candidates
        # of a row come out in column order.
        row, col = np.divmod(np.flatnonzero(above), above.shape[1])
        per_row = np.bincount(row, minlength=tile.shape[0])
        first = np.cumsum(per_row) - per_row
        slot = np.arange(row.size) - first[row] + self.k
        width = self.k + int(per_row.max())
        values = np.full((tile.shape[0], width), -np.inf, dtype=np.float32)
        index = np.full((tile.shape[0], width), -1, dtype=np.int64)
        values[:, : self.k] = self.values[rows]
        index[:, : self.k] = self.index[rows]
        values[row, slot] = tile[row, col]
        index[row, slot] = col + col0
        # A stable sort by value is the (value, index) order: the running entries (smaller
        # indices, already in that order) come first, then the candidates in column order.
        best = np.argsort(-values, axis=1, kind="stable")[:, : self.k]
        self.values[rows] = np.take_along_axis(values, best, axis=1)
        self.index[rows] = np.take_along_axis(index, best, axis=1)
        self.threshold[rows] = self.values[rows, -1]

    def _best_in_tile(self, tile: np.ndarray, above: np.ndarray) -> np.ndarray:
        """`above` narrowed to each row's k best entries of the tile (ties: first columns)."""
        kk = min(self.k, tile.shape[1])
        negated = np.where(above, -tile, np.inf)  # partition's order: smallest first
        negated.partition(kk - 1, axis=1)
        kth = -negated[:, kk - 1 : kk]  # each row's k-th largest value above threshold
        better = tile > kth  # False for NaN
        short = np.isneginf(kth[:, 0])  # fewer than k values above: keep them all
        if short.any():
            better[short] = above[short]
        # Values equal to the k-th go in column order until the row has k.
        tied_row, tied_col = np.nonzero(tile == kth)  # never in short rows (no -inf values)
        if tied_row.size:
            per_row = np.bincount(tied_row, minlength=tile.shape[0])
            rank = np.arange(tied_row.size) - (np.cumsum(per_row) - per_row)[tied_row]
            room = kk - np.count_nonzero(better, axis=1)
            keep = rank < room[tied_row]
            better[tied_row[keep], tied_col[keep]] = True
        return better

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        return finish_topk(self.values, self.index)


class NumpyGemmBackend:
    """The float32 GEMM backend (`InfluenceBackend`): numpy only, always available."""

    name = "numpy"

    def why_unavailable(self) -> str | None:
        return None

    def accumulator(
        self,
        topk: int,
        subset_ratio: float | None,
        num_runs: int | None = None,
        stream_dense: bool = False,
        **options,
    ):
        """`DenseInfluenceAccumulator` for topk 0, else `TopKInfluenceAccumulator`;
        `options` are theirs (`num_runs` and `stream_dense` do not apply here)."""
        del num_runs, stream_dense  # storage grows in blocks; the matrix is always returned
        if topk == 0:
            return DenseInfluenceAccumulator(subset_ratio, **options)
        return TopKInfluenceAccumulator(topk, subset_ratio, **options)


BACKEND = NumpyGemmBackend()
