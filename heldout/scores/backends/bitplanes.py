"""Runs packed along the run axis (64 runs of an example in a word), the accumulator that
keeps them for the popcount and tf-gpu backends, what both backends share (`PlaneProblem`,
`BitPlaneBackend`), and the popcount backend itself.

With words of runs, the count of runs where test t is right and training example j was
in is `popcount(T_t & M_j)` summed over words. `RunBits` transposes runs into such word
planes 8 runs at a time, numpy only; the numba kernels load only when first used.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from typing import NamedTuple

import numpy as np

from heldout._core.row_blocks import RowBlocks
from heldout.errors import ScoresError, UsageError
from heldout.release.aux_arrays import AuxArrays
from heldout.scores.backends.base import (
    InfluenceCounts,
    default_max_matrix_bytes,
    finish_topk,
)
from heldout.scores.results import Influence

WORD_BITS = 64
# The backends' numerator R * S - c * n_in is at most R^2 in magnitude: an exact int32 up
# to 46 340 runs (per ratio: the release has a few thousand).
MAX_EXACT_RUNS = 46340
# Kernels consume words four at a time; planes beyond the last run stay zero, which adds
# nothing to any count.
PLANE_GROUP = 4


class PlaneProblem(NamedTuple):
    """What the bit-plane kernels (`popcount`, `tf_gpu`) take: the runs packed along the
    run axis, and the counts that turn the products S into influence.

    Attributes:
      tests: uint64 [W, N_test] word planes of the test correctness T (`RunBits.planes()`).
      trains: uint64 [W, N] word planes of the training masks M (the same runs).
      correct_count: c, int [N_test]: runs with each test example correct.
      count_in: n_in, int [N]: runs with each training example in.
      scale: float32 [N]: 1 / (n_in * n_out), NaN where either is 0.
      num_runs: R.
    """

    tests: np.ndarray
    trains: np.ndarray
    correct_count: np.ndarray
    count_in: np.ndarray
    scale: np.ndarray
    num_runs: int


class RunBits:
    """0/1 values of `size` examples over runs, packed 64 runs to a word.

    Args:
      size: examples per run.
      capacity_runs: runs to allocate room for at first; the planes double when full.
    """

    def __init__(self, size: int, capacity_runs: int = 256):
        self.size = size
        self.num_runs = 0
        planes = max(PLANE_GROUP, -(-capacity_runs // WORD_BITS))
        planes = -(-planes // PLANE_GROUP) * PLANE_GROUP
        self._planes = np.zeros((planes, size), dtype=np.uint64)
        self._byte_plane = np.zeros(size, dtype=np.uint8)  # the current 8 runs
        self._shifted = np.empty(size, dtype=np.uint8)

    def append(self, values: np.ndarray) -> None:
        """Adds one run: bool [size] (proper 0/1 bools, as numpy makes them)."""
        if values.shape != (self.size,) or values.dtype != np.bool_:
            raise ValueError(f"expected bool [{self.size}], got {values.dtype} {values.shape}")
        bit = self.num_runs % 8
        if bit == 0:
            np.copyto(self._byte_plane, values.view(np.uint8))
        else:
            np.left_shift(values.view(np.uint8), bit, out=self._shifted)
            np.bitwise_or(self._byte_plane, self._shifted, out=self._byte_plane)
        self.num_runs += 1
        if bit == 7:
            self._store_byte_plane(self.num_runs // 8 - 1)

    def _store_byte_plane(self, byte: int) -> None:
        """Writes the byte plane of runs 8b..8b+7 (b = `byte`) into byte b % 8 of plane b // 8."""
        plane = byte // 8
        if plane >= len(self._planes):
            grown = np.zeros((2 * len(self._planes), self.size), dtype=np.uint64)
            grown[: len(self._planes)] = self._planes
            self._planes = grown
        # Little-endian words: byte k of a word is bits 8k..8k+7 (runs 8k..8k+7 of it).
        as_bytes = self._planes[plane].view(np.uint8).reshape(self.size, 8)
        as_bytes[:, _byte_in_word(byte % 8)] = self._byte_plane

    def planes(self) -> np.ndarray:
        """uint64 [W, size]: every run so far, W a multiple of `PLANE_GROUP` (zero padded).

        The runs not yet stored (fewer than 8 since the last store) are stored first, so
        further appends continue where they left off.
        """
        if self.num_runs % 8:
            # Store the partial byte plane now; it keeps its bits, so the append that
            # completes it stores it again, whole.
            self._store_byte_plane(self.num_runs // 8)
        used = -(-self.num_runs // WORD_BITS)
        used = max(PLANE_GROUP, -(-used // PLANE_GROUP) * PLANE_GROUP)
        if used > len(self._planes):  # only when num_runs is 0
            return np.zeros((used, self.size), dtype=np.uint64)
        return self._planes[:used]

    def unpacked(self) -> np.ndarray:
        """bool [num_runs, size]: the runs as given (for tests and small problems)."""
        planes = self.planes()
        as_bytes = planes.view(np.uint8).reshape(len(planes), self.size, 8)
        bits = np.unpackbits(as_bytes, axis=2, bitorder="little")  # [W, size, 64]
        return bits.transpose(0, 2, 1).reshape(-1, self.size)[: self.num_runs].astype(bool)


def _byte_in_word(k: int) -> int:
    """Position of a word's k-th least significant byte in memory."""
    return k if np.little_endian else 7 - k


class _BitRuns:
    """The training masks and test correctness of the runs, each packed along runs."""

    def __init__(self, num_train: int, num_test: int, capacity_runs: int):
        self.masks = RunBits(num_train, capacity_runs)
        self.tests = RunBits(num_test, capacity_runs)

    def append(self, mask: np.ndarray, test_correct: np.ndarray) -> None:
        self.masks.append(mask)
        self.tests.append(test_correct)


class BitPackedInfluenceAccumulator(InfluenceCounts):
    """Influence from exact integer counts of bit-packed runs (popcount or tf-gpu backend).

    `add` keeps every run packed along the run axis (`RunBits`: 64 runs of an example in
    a word). `result` hands the word planes to the backend's kernels, which count S
    exactly and turn it into influence tile by tile: the dense matrix (the only large
    array) or each row's top-k, without ever holding the dense matrix.

    Args:
      topk: 0 for the dense matrix, else k per test example.
      subset_ratio: recorded in the result.
      backend: a `BitPlaneBackend` (`PopcountBackend`, `tf_gpu.TfGpuBackend`): its
        `name`, `streams_dense` and `kernels()` (warm_up, dense_influence,
        dense_influence_blocks, topk_influence).
      max_matrix_bytes: refuse larger dense matrices; default: the memory available.
      num_runs: runs expected, to size the storage once (it grows if more come).
      stream_dense: where the backend `streams_dense`, the dense result's `matrix` is a
        `heldout._core.row_blocks.RowBlocks` computed while it is written (`save_scores`),
        never held whole; for callers that only write it.
    """

    def __init__(
        self,
        topk: int = 0,
        subset_ratio: float | None = None,
        backend=None,
        max_matrix_bytes: int | None = None,
        num_runs: int | None = None,
        stream_dense: bool = False,
    ):
        super().__init__(subset_ratio)
        self.stream_dense = bool(stream_dense)
        if topk < 0:
            raise UsageError(f"topk must be 0 (dense) or positive, got {topk}")
        self.k = topk
        self._backend = BACKEND if backend is None else backend
        self.backend = self._backend.name
        self.max_matrix_bytes = max_matrix_bytes or default_max_matrix_bytes()
        self._capacity_runs = max(64, min(num_runs or 256, MAX_EXACT_RUNS))
        # Loading the backend (numba and its cached kernels; TensorFlow) overlaps the
        # reading of the runs instead of following it. Not a daemon: the interpreter joins
        # it before it shuts down, on every path (a bad run, an interrupt). A daemon thread
        # still importing or compiling (LLVM, without the GIL) while the interpreter
        # finalizes can crash the process (exit 139) after an ordinary one-line error.
        self._warm_up = threading.Thread(
            target=_warm_up, args=(self._backend, topk > 0), name="influence-warm-up"
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
        kernels = self._backend.kernels()
        problem = PlaneProblem(
            self._runs.tests.planes(),
            self._runs.masks.planes(),
            self.test_correct_count,
            self.count_in,
            self._column_scale(),
            self.num_runs,
        )
        if self.k == 0 and self.stream_dense and self._backend.streams_dense:
            shape = (self.num_test, self.num_train)
            blocks = RowBlocks(shape, np.float32, lambda: kernels.dense_influence_blocks(problem))
            return self._result(matrix=blocks, backend=self.backend)
        if self.k == 0:
            return self._result(matrix=kernels.dense_influence(problem), backend=self.backend)
        values, index = kernels.topk_influence(problem, self.k)
        index, values = finish_topk(values, index)
        return self._result(topk_index=index, topk_value=values, backend=self.backend)


def _warm_up(backend, topk: bool) -> None:
    """Imports a backend's kernels and runs them once on a tiny problem (errors: later,
    for real)."""
    try:
        backend.kernels().warm_up(topk)
    except Exception:  # noqa: BLE001 - the real call raises it again, in the caller's thread
        pass


class BitPlaneBackend:
    """What the bit-plane backends (popcount, tf-gpu) share: a `BitPackedInfluenceAccumulator`
    that packs the runs and hands the word planes to the backend's `kernels()`.

    Subclasses set `name`, `streams_dense`, `why_unavailable()` and `kernels()`.
    """

    name: str
    streams_dense: bool

    def kernels(self):
        """The module with the kernels (warm_up, dense_influence, dense_influence_blocks,
        topk_influence)."""
        raise NotImplementedError

    def accumulator(
        self,
        topk: int,
        subset_ratio: float | None,
        num_runs: int | None = None,
        stream_dense: bool = False,
        max_matrix_bytes: int | None = None,
    ) -> BitPackedInfluenceAccumulator:
        return BitPackedInfluenceAccumulator(
            topk, subset_ratio, self, max_matrix_bytes, num_runs, stream_dense=stream_dense
        )


_KERNELS = "heldout.scores.backends.popcount"  # by name: it imports this module's constants


class PopcountBackend(BitPlaneBackend):
    """The popcount backend (`InfluenceBackend`): exact AND + POPCOUNT counts on the CPU.

    Its kernels (`heldout.scores.backends.popcount`, compiled by numba) are imported only
    when first used, in the accumulator's warm-up thread.
    """

    name = "popcount"
    streams_dense = True

    def why_unavailable(self) -> str | None:
        if importlib.util.find_spec("numba") is None:  # checked without importing it
            return "needs numba (pip install numba)"
        return None

    def kernels(self):
        """The numba kernels (`heldout.scores.backends.popcount`), imported on first use."""
        return importlib.import_module(_KERNELS)


BACKEND = PopcountBackend()
