"""Exact influence from bit-packed runs (`bitplanes`): AND + POPCOUNT, 64 runs a word.

`S[t, j]` is the sum over words of `popcount(T_t & M_j)`, an exact integer, so the
influence `(R * S - c * n_in) * scale` is the same float32 number the GEMM reference
gives. Kernels are compiled by numba for the host CPU (cached between processes) and run
on one thread per core (`HELDOUT_THREADS` overrides). Blocking and vectorization:
docs/performance.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numba.core.config
import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from heldout._core.numba_start import load_numba_arrays
from heldout.scores.backends.bitplanes import MAX_EXACT_RUNS, PLANE_GROUP, PlaneProblem

load_numba_arrays()  # before the first compile would import it with all of scipy.linalg


def _allow_512_bit_vectors() -> None:
    """Lets LLVM vectorize with 512-bit registers on AVX512 CPUs.

    LLVM's tuning for most AVX512 CPUs prefers 256-bit vectors (older Xeons clock down
    on 512-bit code); here a 512-bit VPOPCNTQ does twice the work of a 256-bit one, and
    the top-k kernel runs faster (docs/performance.md). Only done
    when the user has chosen no CPU name or features for numba (NUMBA_CPU_NAME,
    NUMBA_CPU_FEATURES), and it changes numba's code generation for this process alone.
    """
    if numba.core.config.CPU_NAME is not None or numba.core.config.CPU_FEATURES is not None:
        return
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    if features.get("avx512f"):
        numba.core.config.CPU_FEATURES = features.flatten() + ",-prefer-256-bit"


_allow_512_bit_vectors()

_COLUMNS = 512  # training examples per chunk: 2 x 4 KiB of sums + 16 KiB of words in L1


@intrinsic
def _popcount(typingctx, word):
    """LLVM's ctpop on a uint64: one POPCNT, or a vector of them when vectorized."""
    if word != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@njit(inline="always")
def _group_words(tests, w, t):
    """Test example t's words in planes w..w+3 (a group of four: `PLANE_GROUP`)."""
    return tests[w, t], tests[w + 1, t], tests[w + 2, t], tests[w + 3, t]


@njit(inline="always")
def _group_chunk(trains, w, j0, width):
    """Training examples j0..j0+width in planes w..w+3: four rows of words."""
    return (
        trains[w, j0 : j0 + width],
        trains[w + 1, j0 : j0 + width],
        trains[w + 2, j0 : j0 + width],
        trains[w + 3, j0 : j0 + width],
    )


@njit(inline="always")
def _and_count(words, x0, x1, x2, x3):
    """popcount(words & x) over one group of four words, as an int32."""
    return np.int32(
        (_popcount(words[0] & x0) + _popcount(words[1] & x1))
        + (_popcount(words[2] & x2) + _popcount(words[3] & x3))
    )


@njit(nogil=True, cache=True, boundscheck=False)
def _pair_sums(tests, trains, t0, t1, j0, width, planes, sums0, sums1):
    """sums0[:width] = S[t0, j0:j0+width] over the first `planes` word planes; t1 likewise.

    t1 may equal t0 (an odd row out). Each chunk word is loaded once for both rows.
    """
    for j in range(width):
        sums0[j] = 0
        sums1[j] = 0
    for w in range(0, planes, 4):
        a, b = _group_words(tests, w, t0), _group_words(tests, w, t1)
        m0, m1, m2, m3 = _group_chunk(trains, w, j0, width)
        for j in range(width):
            x0, x1, x2, x3 = m0[j], m1[j], m2[j], m3[j]
            sums0[j] += _and_count(a, x0, x1, x2, x3)
            sums1[j] += _and_count(b, x0, x1, x2, x3)


@njit(nogil=True, cache=True, boundscheck=False)
def _pair_influence(
    tests,
    trains,
    t0,
    t1,
    j0,
    width,
    sums0,
    sums1,
    correct0,
    correct1,
    count_in,
    scale,
    num_runs,
    out0,
    out1,
    limit0,
    limit1,
):
    """Influence of rows t0, t1 on training examples j0..j0+width into out0, out1.

    `count_in` and `scale` are the chunk's slices. The last four word planes are counted
    in the same pass that turns the counts into influence (for up to 256 runs that is the
    only pass), and the values above each row's `limit` are counted too (for the top-k).

    Returns:
      (values of row t0 above limit0, values of row t1 above limit1).
    """
    last = tests.shape[0] - 4
    if last > 0:
        _pair_sums(tests, trains, t0, t1, j0, width, last, sums0, sums1)
    a, b = _group_words(tests, last, t0), _group_words(tests, last, t1)
    m0, m1, m2, m3 = _group_chunk(trains, last, j0, width)
    above0 = 0
    above1 = 0
    for j in range(width):
        x0, x1, x2, x3 = m0[j], m1[j], m2[j], m3[j]
        s0 = _and_count(a, x0, x1, x2, x3)
        s1 = _and_count(b, x0, x1, x2, x3)
        if last > 0:
            s0 += sums0[j]
            s1 += sums1[j]
        # R * S - c * n_in: an exact int32 (|.| <= R^2), rounded once to float32, then
        # the float32 product with the column's scale: the float32 path's very operations.
        v0 = np.float32(np.int32(num_runs * s0 - correct0 * count_in[j])) * scale[j]
        v1 = np.float32(np.int32(num_runs * s1 - correct1 * count_in[j])) * scale[j]
        out0[j] = v0
        out1[j] = v1
        above0 += v0 > limit0  # False for NaN
        above1 += v1 > limit1
    return above0, above1


@njit(nogil=True, cache=True, boundscheck=False)
def _dense_rows(tests, trains, correct_count, count_in, scale, num_runs, out, r0, r1):
    """Rows r0..r1 of the dense influence: one task (tasks run on threads, GIL released).

    Chunk by chunk of training examples, the rows two at a time: the chunk's words are
    reused by every row pair of the task while they are in cache.
    """
    num_train = out.shape[1]
    no_limit = np.float32(np.inf)
    sums0 = np.empty(_COLUMNS, np.int32)
    sums1 = np.empty(_COLUMNS, np.int32)
    for j0 in range(0, num_train, _COLUMNS):
        j1 = min(num_train, j0 + _COLUMNS)
        for t in range(r0, r1, 2):
            t1 = min(t + 1, r1 - 1)  # t1 == t: the row is written twice, identically
            _pair_influence(
                tests, trains, t, t1, j0, j1 - j0, sums0, sums1, correct_count[t],
                correct_count[t1], count_in[j0:j1], scale[j0:j1], num_runs, out[t, j0:j1],
                out[t1, j0:j1], no_limit, no_limit,
            )  # fmt: skip


@njit(nogil=True, cache=True, boundscheck=False)
def _merge_row(values, index, t, worst, threshold, row, j0, width, candidates):
    """Merges one row's candidates (training examples j0..) into its running top-k.

    The order is (value descending, training index ascending), so equal values keep the
    smaller index: columns arrive in increasing order, hence a candidate must be strictly
    larger than the current k-th value to enter, and it evicts the worst entry (smallest
    value; of equal smallest values, the largest index). NaN never compares larger.
    """
    k = values.shape[1]
    slot = worst[row]
    limit = threshold[row]
    for j in range(width):
        value = candidates[j]
        if value > limit:
            values[t, slot] = value
            index[t, slot] = j0 + j
            slot = 0
            for q in range(1, k):
                if values[t, q] < values[t, slot] or (
                    values[t, q] == values[t, slot] and index[t, q] > index[t, slot]
                ):
                    slot = q
            limit = values[t, slot]
    worst[row] = slot
    threshold[row] = limit


@njit(nogil=True, cache=True, boundscheck=False)
def _topk_rows(tests, trains, correct_count, count_in, scale, num_runs, values, index, r0, r1):
    """Rows r0..r1 of the running top-k: one task, walked as in `_dense_rows`."""
    num_train = trains.shape[1]
    sums0 = np.empty(_COLUMNS, np.int32)
    sums1 = np.empty(_COLUMNS, np.int32)
    candidates0 = np.empty(_COLUMNS, np.float32)
    candidates1 = np.empty(_COLUMNS, np.float32)
    worst = np.zeros(r1 - r0, np.int64)  # slot of each row's worst entry
    threshold = np.full(r1 - r0, -np.inf, np.float32)  # each row's worst value
    for j0 in range(0, num_train, _COLUMNS):
        j1 = min(num_train, j0 + _COLUMNS)
        width = j1 - j0
        for t in range(r0, r1, 2):
            t1 = min(t + 1, r1 - 1)
            above0, above1 = _pair_influence(
                tests, trains, t, t1, j0, width, sums0, sums1, correct_count[t],
                correct_count[t1], count_in[j0:j1], scale[j0:j1], num_runs, candidates0,
                candidates1, threshold[t - r0], threshold[t1 - r0],
            )  # fmt: skip
            if above0:
                _merge_row(values, index, t, worst, threshold, t - r0, j0, width, candidates0)
            if above1 and t1 != t:
                _merge_row(values, index, t1, worst, threshold, t1 - r0, j0, width, candidates1)


def _run_tasks(kernel, num_rows: int, *args) -> None:
    """Runs `kernel(*args, r0, r1)` over blocks of rows on one thread per core.

    The kernels release the GIL, so plain threads run them in parallel; enough blocks
    (8 a thread) balance the threads, each long enough (up to 256 rows) to reuse a chunk's
    words many times.
    """
    threads = _threads()
    rows = -(-num_rows // (8 * threads))
    rows = int(min(256, max(2, rows + rows % 2)))
    blocks = [(r0, min(num_rows, r0 + rows)) for r0 in range(0, num_rows, rows)]
    if threads == 1 or len(blocks) == 1:
        for r0, r1 in blocks:
            kernel(*args, r0, r1)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="popcount") as pool:
        for done in [pool.submit(kernel, *args, r0, r1) for r0, r1 in blocks]:
            done.result()


def _threads() -> int:
    """The cores this process may use (its CPU affinity), or HELDOUT_THREADS if set."""
    configured = os.environ.get("HELDOUT_THREADS")
    if configured:
        return max(1, int(configured))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _check_planes(tests: np.ndarray, trains: np.ndarray) -> None:
    for name, planes in (("tests", tests), ("trains", trains)):
        if planes.dtype != np.uint64 or planes.ndim != 2 or not planes.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous uint64 [W, size] word planes")
    if tests.shape[0] != trains.shape[0] or tests.shape[0] % PLANE_GROUP:
        raise ValueError(
            f"tests and trains must have the same number of planes, a multiple of "
            f"{PLANE_GROUP}; got {tests.shape[0]} and {trains.shape[0]}"
        )


def count_products(tests: np.ndarray, trains: np.ndarray) -> np.ndarray:
    """S = T^T M exactly: int64 [N_test, N], from word planes (`RunBits.planes()`).

    The dense kernel with R = 1, c = n_in = 0 and a scale of 1 writes float32(S): exact,
    as S <= R <= 46 340 < 2^24. (One kernel fewer to compile; this serves checks.)

    Args:
      tests: uint64 [W, N_test] word planes of the test correctness T.
      trains: uint64 [W, N] word planes of the training masks M (same runs).
    """
    _check_planes(tests, trains)
    if 64 * tests.shape[0] > MAX_EXACT_RUNS:
        raise ValueError(f"count_products takes at most {MAX_EXACT_RUNS} runs")
    num_test, num_train = tests.shape[1], trains.shape[1]
    counts = dense_influence(
        PlaneProblem(
            tests,
            trains,
            np.zeros(num_test, np.int32),
            np.zeros(num_train, np.int32),
            np.ones(num_train, np.float32),
            1,
        )
    )
    return counts.astype(np.int64)


def _kernel_args(problem: PlaneProblem) -> tuple:
    """The kernels' leading arguments: the planes checked, the counts as the kernels' types."""
    _check_planes(problem.tests, problem.trains)
    num_runs = problem.num_runs
    if num_runs > MAX_EXACT_RUNS:
        raise ValueError(f"the popcount kernels take at most {MAX_EXACT_RUNS} runs, got {num_runs}")
    count_in = np.ascontiguousarray(problem.count_in, dtype=np.int32)
    scale = np.ascontiguousarray(problem.scale, dtype=np.float32)
    correct_count = np.ascontiguousarray(problem.correct_count, dtype=np.int32)
    return problem.tests, problem.trains, correct_count, count_in, scale, np.int32(num_runs)


def dense_influence(problem: PlaneProblem, out: np.ndarray | None = None) -> np.ndarray:
    """The dense influence matrix float32 [N_test, N] from word planes.

    Args:
      problem: the runs' word planes and counts (`PlaneProblem`).
      out: float32 [N_test, N] to fill (C order), else a new array.
    """
    args = _kernel_args(problem)
    shape = (problem.tests.shape[1], problem.trains.shape[1])
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous float32 {shape}")
    if out.size:
        _run_tasks(_dense_rows, shape[0], *args, out)
    return out


def dense_influence_blocks(
    problem: PlaneProblem, block_bytes: int = 32 << 20
) -> Iterator[np.ndarray]:
    """`dense_influence`'s rows, a block at a time, in one reused buffer.

    For `heldout._core.row_blocks.RowBlocks`: each block (about `block_bytes`, a whole number of
    rows, every core working on it) is valid until the next is asked for. The values are
    those of `dense_influence`, bit for bit: the same kernel computes each row.

    Args: as `dense_influence`, and block_bytes: the buffer's size.
    """
    num_test, num_train = problem.tests.shape[1], problem.trains.shape[1]
    rows = int(max(1, min(num_test, block_bytes // max(1, 4 * num_train))))
    buffer = np.empty((rows, num_train), dtype=np.float32)
    for r0 in range(0, num_test, rows):
        r1 = min(num_test, r0 + rows)
        block = problem._replace(
            tests=np.ascontiguousarray(problem.tests[:, r0:r1]),
            correct_count=problem.correct_count[r0:r1],
        )
        yield dense_influence(block, out=buffer[: r1 - r0])


def topk_influence(problem: PlaneProblem, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each test row's k largest influences, never holding more than a chunk of a row.

    Args: as `dense_influence`, and k.

    Returns:
      (values float32 [N_test, k], index int64 [N_test, k]), unordered within a row;
      -inf and -1 in slots that no defined influence filled (see
      `heldout.scores.influence.finish_topk` for the final order and padding).
    """
    args = _kernel_args(problem)
    num_test = problem.tests.shape[1]
    values = np.full((num_test, k), -np.inf, dtype=np.float32)
    index = np.full((num_test, k), -1, dtype=np.int64)
    if num_test and problem.trains.shape[1]:
        _run_tasks(_topk_rows, num_test, *args, values, index)
    return values, index


def warm_up(topk: bool = False) -> None:
    """Compiles, or loads from numba's cache, the kernel `dense_influence` or
    `topk_influence` uses, by running it on a tiny problem of the same types; and, numba
    being loaded now, switches the runs' format checks to their compiled form."""
    from heldout.release import aux_arrays

    aux_arrays.use_compiled_checks()
    planes = np.zeros((PLANE_GROUP, 2), dtype=np.uint64)
    columns = np.zeros(2, np.int32), np.zeros(2, np.int32), np.ones(2, np.float32)
    problem = PlaneProblem(planes, planes, *columns, 1)
    if topk:
        topk_influence(problem, 1)
    else:
        dense_influence(problem)
