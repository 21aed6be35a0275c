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

Backends (`BACKENDS`; `influence_accumulator(backend=...)`, `--backend`):
- `numpy`: the float32 GEMMs above;
- `popcount`: every run kept bit-packed along runs (`heldout.scores.backends.bitplanes`) and S counted
  exactly, 64 runs per AND + POPCOUNT (`heldout.scores.backends.popcount`, compiled by numba);
- `tf-gpu`: the same packed runs as float16 0/1 blocks of at most 2048 runs multiplied on
  a GPU through TensorFlow (exact: every block sum is an integer <= 2048), the top-k
  taken per tile on the device (`heldout.scores.backends.tf_gpu`);
- `auto`: the fastest available for the problem size (`choose_backend`).
Every backend computes the same exact integer numerator and the same float32 scale, so
the results are identical (bit for bit up to 4096 runs, where the float32 GEMMs are
exact; beyond, the float32 path rounds its sums and agrees to float32 precision). Ties
in the top-k go to the smaller training index, in every backend.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import threading
from collections.abc import Iterable, Sized

import numpy as np

from heldout._core.row_blocks import RowBlocks
from heldout.errors import InconsistentRunError, ScoresError, UsageError
from heldout.release.aux_arrays import AuxArrays
from heldout.scores.backends.bitplanes import MAX_EXACT_RUNS, RunBits


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
        high-influence pairs; of equal values, the smaller training index comes first.
      backend: the backend that computed it (`BACKENDS`, never "auto").
    """

    subset_ratio: float | None
    num_runs: int
    count_in: np.ndarray
    count_out: np.ndarray
    matrix: np.ndarray | None = None
    topk_index: np.ndarray | None = None
    topk_value: np.ndarray | None = None
    backend: str = "numpy"

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

    def _check_dense_size(self) -> None:
        needed = 4 * self.num_train * self.num_test
        if needed > self.max_matrix_bytes:
            raise InfluenceTooLargeError(
                f"a dense influence matrix of {self.num_test} x {self.num_train} needs "
                f"{needed / 2**30:.1f} GiB, more than the {self.max_matrix_bytes / 2**30:.1f} "
                "GiB allowed; use the top-k mode (--influence_topk K) instead"
            )

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
        # flatnonzero: 10x faster than a 2-D nonzero on a tile that is mostly False; the
        # candidates of a row come out in column order.
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


def finish_topk(values: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, value) of running top-k arrays in the final order; padding becomes (-1, NaN).

    Args:
      values: float32 [rows, k], -inf in slots no defined influence filled.
      index: int64 [rows, k], the training example of each value.

    Returns:
      (index int64, value float32), each row by decreasing value, equal values by
      increasing index.
    """
    order = np.lexsort((index, -values), axis=1)
    values = np.take_along_axis(values, order, axis=1)
    index = np.take_along_axis(index, order, axis=1)
    missing = ~np.isfinite(values)
    values[missing] = np.nan
    index[missing] = -1
    return index, values


class BitPackedInfluenceAccumulator(_InfluenceCounts):
    """Influence from exact integer counts of bit-packed runs (popcount or tf-gpu backend).

    `add` keeps every run packed along the run axis (`heldout.scores.backends.bitplanes.RunBits`: 64 runs
    of an example in a word; CIFAR 7.5 KB a run, ImageNet 166 KB). `result` hands the
    word planes to the backend, which counts S exactly and turns it into influence tile
    by tile: the dense matrix (the only large array) or each row's top-k, without ever
    holding the dense matrix.

    Args:
      topk: 0 for the dense matrix, else k per test example.
      subset_ratio: recorded in the result.
      backend: "popcount" (CPU, numba) or "tf-gpu" (TensorFlow on a GPU).
      max_matrix_bytes: as for `DenseInfluenceAccumulator`.
      num_runs: runs expected, to size the storage once (it grows if more come).
      stream_dense: with the popcount backend, the dense result's `matrix` is a
        `heldout._core.row_blocks.RowBlocks` computed while it is written (`save_scores`), never
        held whole; for callers that only write it (`compute_scores --scores=influence`).
    """

    def __init__(
        self,
        topk: int = 0,
        subset_ratio: float | None = None,
        backend: str = "popcount",
        max_matrix_bytes: int | None = None,
        num_runs: int | None = None,
        stream_dense: bool = False,
    ):
        super().__init__(subset_ratio)
        self.stream_dense = bool(stream_dense)
        if topk < 0:
            raise UsageError(f"topk must be 0 (dense) or positive, got {topk}")
        if backend not in ("popcount", "tf-gpu"):
            raise UsageError(f"backend must be popcount or tf-gpu here, got {backend!r}")
        self.k = topk
        self.backend = backend
        self.max_matrix_bytes = max_matrix_bytes or _physical_memory_bytes()
        self._capacity_runs = max(64, min(num_runs or 256, MAX_EXACT_RUNS))
        # Loading the backend (numba and its cached kernels: ~1 s; TensorFlow: seconds)
        # overlaps the reading of the runs instead of following it.
        self._warm_up = threading.Thread(
            target=_warm_up, args=(backend, topk > 0), name="influence-warm-up", daemon=True
        )
        self._warm_up.start()

    def _new_store(self) -> _BitRuns:
        if self.k == 0:
            self._check_dense_size()
        return _BitRuns(self.num_train, self.num_test, self._capacity_runs)

    def add(self, aux: AuxArrays) -> None:
        if self.num_runs >= MAX_EXACT_RUNS:
            raise ScoresError(
                f"the {self.backend} backend counts exactly up to {MAX_EXACT_RUNS} runs per "
                "ratio; use --backend=numpy for more"
            )
        super().add(aux)

    def result(self) -> Influence:
        """The dense matrix or the top-k; the accumulator drops its runs and is spent."""
        self._start_result()
        self._warm_up.join()
        if self.backend == "popcount":
            from heldout.scores.backends import popcount as kernels
        else:
            from heldout.scores.backends import tf_gpu as kernels
        inputs = (
            self._runs.tests.planes(),
            self._runs.masks.planes(),
            self.test_correct_count,
            self.count_in,
            self._column_scale(),
            self.num_runs,
        )
        if self.k == 0 and self.stream_dense and self.backend == "popcount":
            shape = (self.num_test, self.num_train)
            blocks = RowBlocks(shape, np.float32, lambda: kernels.dense_influence_blocks(*inputs))
            return self._result(matrix=blocks, backend=self.backend)
        if self.k == 0:
            return self._result(matrix=kernels.dense_influence(*inputs), backend=self.backend)
        values, index = kernels.topk_influence(*inputs, self.k)
        index, values = finish_topk(values, index)
        return self._result(topk_index=index, topk_value=values, backend=self.backend)


def _warm_up(backend: str, topk: bool) -> None:
    """Imports a backend and runs its kernel once on a tiny problem (errors: later, for real)."""
    try:
        if backend == "popcount":
            from heldout.scores.backends import popcount as kernels
        else:
            from heldout.scores.backends import tf_gpu as kernels
        kernels.warm_up(topk)
    except Exception:  # noqa: BLE001 - the real call raises it again, in the caller's thread
        pass


class _BitRuns:
    """The training masks and test correctness of the runs, each packed along runs."""

    def __init__(self, num_train: int, num_test: int, capacity_runs: int):
        self.masks = RunBits(num_train, capacity_runs)
        self.tests = RunBits(num_test, capacity_runs)

    def append(self, mask: np.ndarray, test_correct: np.ndarray) -> None:
        self.masks.append(mask)
        self.tests.append(test_correct)


# --- backends ------------------------------------------------------------------------------

BACKENDS = ("auto", "numpy", "popcount", "tf-gpu")
# Binary multiply-adds (R x N x N_test) below which numpy's float32 GEMM finishes before
# numba is even loaded (~0.5 s: its import and the cached kernels); above, popcount wins
# (measured: ~4-7 G words a second per core, 64 multiply-adds a word, against ~40 G
# float32 multiply-adds per core, and half the products of the published formula).
POPCOUNT_MIN_WORK = 5e10
# Above this, a GPU pays for TensorFlow's start (~5-10 s) against all the CPU's cores.
GPU_MIN_WORK = 5e13
_NUMPY_OPTIONS = ("block_bytes", "tile_test", "tile_train")


@dataclasses.dataclass(frozen=True)
class BackendChoice:
    """The backend `auto` (or the user) chose, and why, for messages."""

    backend: str
    reason: str


def choose_backend(
    num_runs: int | None, num_train: int, num_test: int, requested: str = "auto"
) -> BackendChoice:
    """The backend to use for a problem: `requested`, or for "auto" the fastest available.

    Args:
      num_runs: R, if known (else 1000, a typical release ratio, is assumed).
      num_train, num_test: N and N_test.
      requested: one of `BACKENDS`.

    Raises:
      UsageError: an unknown backend, or one that cannot run here (no numba for popcount,
        no GPU visible to TensorFlow for tf-gpu), named with what is missing.
    """
    if requested not in BACKENDS:
        raise UsageError(f"unknown influence backend {requested!r}; choose from {list(BACKENDS)}")
    runs = 1000 if num_runs is None else num_runs
    work = float(runs) * num_train * num_test
    size = f"{work:.1e} binary multiply-adds"
    if requested == "numpy":
        return BackendChoice("numpy", "requested")
    if requested == "popcount":
        if not popcount_available():
            raise UsageError("the popcount backend needs numba (pip install numba)")
        return BackendChoice("popcount", "requested")
    if requested == "tf-gpu":
        from heldout.scores.backends import tf_gpu as influence_gpu

        missing = influence_gpu.why_no_gpu()
        if missing:
            raise UsageError(f"the tf-gpu backend cannot run here: {missing}")
        return BackendChoice("tf-gpu", "requested")
    if runs > MAX_EXACT_RUNS:
        return BackendChoice("numpy", f"more than {MAX_EXACT_RUNS} runs")
    if work < POPCOUNT_MIN_WORK:
        return BackendChoice("numpy", f"small problem ({size})")
    if work >= GPU_MIN_WORK:
        from heldout.scores.backends import tf_gpu as influence_gpu

        missing = influence_gpu.why_no_gpu()
        if not missing:
            return BackendChoice("tf-gpu", f"{size}, a GPU is visible")
    if popcount_available():
        return BackendChoice("popcount", size)
    return BackendChoice("numpy", f"{size}, but numba is not installed")


def popcount_available() -> bool:
    """Whether numba can be imported (checked without importing it)."""
    return importlib.util.find_spec("numba") is not None


class InfluenceAccumulator:
    """Streams runs into influence with the backend chosen for the problem.

    The backend is settled at the first run, when N and N_test are known (`choice` then
    says which and why); a requested backend that cannot run here is refused at once,
    before any reading.

    Args:
      topk: 0 for the dense matrix, else k per test example.
      subset_ratio: recorded in the result.
      backend: one of `BACKENDS`.
      num_runs: runs that will be added, if known (for the choice and the storage).
      **options: `max_matrix_bytes` for every backend; `block_bytes`, `tile_test` and
        `tile_train` are the numpy backend's (giving one selects it under "auto");
        `stream_dense` (see `BitPackedInfluenceAccumulator`) is the popcount backend's
        and ignored by the others.
    """

    def __init__(
        self,
        topk: int = 0,
        subset_ratio: float | None = None,
        backend: str = "auto",
        num_runs: int | None = None,
        **options,
    ):
        if topk < 0:
            raise UsageError(f"topk must be 0 (dense) or positive, got {topk}")
        unknown = sorted(set(options) - set(_NUMPY_OPTIONS) - {"max_matrix_bytes", "stream_dense"})
        if unknown:
            raise TypeError(f"unknown influence options {unknown}")
        # Only the popcount backend streams; the others return the array as always.
        self._stream_dense = bool(options.pop("stream_dense", False))
        numpy_only = sorted(set(options) & set(_NUMPY_OPTIONS))
        if numpy_only and backend not in ("auto", "numpy"):
            raise UsageError(f"{numpy_only} are options of the numpy backend, not {backend}")
        self.topk, self.subset_ratio, self.num_runs_expected = topk, subset_ratio, num_runs
        self._options = options
        self._requested = "numpy" if numpy_only else backend
        self.choice: BackendChoice | None = None
        self._impl: _InfluenceCounts | None = None
        if self._requested != "auto":  # refuse what cannot run before hours of reading
            self._start(choose_backend(num_runs, 1, 1, self._requested))

    def _start(self, choice: BackendChoice) -> None:
        self.choice = choice
        if choice.backend == "numpy":
            if self.topk == 0:
                self._impl = DenseInfluenceAccumulator(self.subset_ratio, **self._options)
            else:
                self._impl = TopKInfluenceAccumulator(self.topk, self.subset_ratio, **self._options)
        else:
            self._impl = BitPackedInfluenceAccumulator(
                self.topk,
                self.subset_ratio,
                choice.backend,
                self._options.get("max_matrix_bytes"),
                self.num_runs_expected,
                stream_dense=self._stream_dense,
            )

    @property
    def backend(self) -> str | None:
        """The backend that runs (None before the first run under "auto")."""
        return None if self.choice is None else self.choice.backend

    def add(self, aux: AuxArrays) -> None:
        """Adds one run (every run must have the first one's N and N_test)."""
        if self._impl is None:
            self._start(choose_backend(self.num_runs_expected, aux.num_train, aux.num_test))
        self._impl.add(aux)

    def result(self) -> Influence:
        """The influence; the accumulator is spent afterwards.

        Raises:
          ScoresError: no run was added.
        """
        if self._impl is None:
            raise ScoresError("no runs were added; influence needs at least one run")
        return self._impl.result()


def influence_accumulator(
    topk: int = 0,
    subset_ratio: float | None = None,
    backend: str = "auto",
    num_runs: int | None = None,
    **options,
) -> InfluenceAccumulator:
    """An `InfluenceAccumulator` (dense for `topk=0`, else top-k) on the given backend."""
    return InfluenceAccumulator(topk, subset_ratio, backend, num_runs, **options)


def compute_influence(
    runs: Iterable[AuxArrays],
    topk: int = 0,
    subset_ratio: float | None = None,
    backend: str = "auto",
    **options,
) -> Influence:
    """Influence from runs of one subset ratio (dense, or top-k per test example).

    Args:
      runs: the runs' aux arrays (a sized collection lets "auto" count them first).
      topk: 0 for the dense matrix, else k per test example.
      subset_ratio: recorded in the result.
      backend: one of `BACKENDS`; the result's `backend` says which ran.
      **options: see `InfluenceAccumulator`.
    """
    num_runs = len(runs) if isinstance(runs, Sized) else None
    accumulator = influence_accumulator(topk, subset_ratio, backend, num_runs, **options)
    for aux in runs:
        accumulator.add(aux)
    return accumulator.result()


def _physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40
