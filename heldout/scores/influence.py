"""Influence of training examples on test examples, from runs of one subset ratio.

    infl[t, j] = P(test t correct | j trained) - P(test t correct | j held out)
               = (R * S - c * n_in) / (n_in * n_out),   S = T^T M

with T the runs' test correctness, M their training masks, c = colsum(T), n_in =
colsum(M) and n_out = R - n_in; NaN where n_in or n_out is 0. Backends (registered in
`heldout.scores.backends.registry`) compute the same exact numerator; `choose_backend`
picks one for "auto". Dense mode returns the matrix, top-k mode the k largest values per
test example (ties to the smaller training index). Derivation: docs/methods.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sized

from heldout.errors import ScoresError, UsageError
from heldout.release.aux_arrays import AuxArrays
from heldout.scores.backends.base import InfluenceAccumulatorLike
from heldout.scores.backends.bitplanes import MAX_EXACT_RUNS
from heldout.scores.backends.numpy_gemm import NUMPY_OPTIONS
from heldout.scores.backends.registry import AUTO, BACKENDS, get_backend
from heldout.scores.results import Influence

__all__ = [
    "BACKENDS",
    "GPU_MIN_WORK",
    "POPCOUNT_MIN_WORK",
    "BackendChoice",
    "InfluenceAccumulator",
    "InfluencePlan",
    "choose_backend",
    "compute_influence",
    "influence_accumulator",
    "plan_influence",
    "popcount_available",
]

# Binary multiply-adds (R x N x N_test) below which numpy's float32 GEMM finishes before
# numba is even loaded; above, popcount wins (docs/performance.md).
POPCOUNT_MIN_WORK = 5e10
# Above this, a GPU pays for TensorFlow's start against all the CPU's cores.
GPU_MIN_WORK = 5e13


@dataclasses.dataclass(frozen=True)
class BackendChoice:
    """The backend `auto` (or the user) chose, and why, for messages."""

    backend: str
    reason: str


def choose_backend(
    num_runs: int | None, num_train: int, num_test: int, requested: str = AUTO
) -> BackendChoice:
    """The backend to use for a problem: `requested`, or for "auto" the fastest available.

    Args:
      num_runs: R, if known (else 1000, a typical release ratio, is assumed).
      num_train, num_test: N and N_test.
      requested: one of `BACKENDS`.

    Returns:
      The choice and its reason.

    Raises:
      UsageError: an unknown backend, or one that cannot run here (no numba for popcount,
        no GPU visible to TensorFlow for tf-gpu), named with what is missing.
    """
    if requested not in BACKENDS:
        raise UsageError(f"unknown influence backend {requested!r}; choose from {list(BACKENDS)}")
    if requested != AUTO:
        missing = get_backend(requested).why_unavailable()
        if missing:
            raise UsageError(f"the {requested} backend {missing}")
        return BackendChoice(requested, "requested")
    runs = 1000 if num_runs is None else num_runs
    work = float(runs) * num_train * num_test
    size = f"{work:.1e} binary multiply-adds"
    if runs > MAX_EXACT_RUNS:
        return BackendChoice("numpy", f"more than {MAX_EXACT_RUNS} runs")
    if work < POPCOUNT_MIN_WORK:
        return BackendChoice("numpy", f"small problem ({size})")
    if work >= GPU_MIN_WORK and get_backend("tf-gpu").why_unavailable() is None:
        return BackendChoice("tf-gpu", f"{size}, a GPU is visible")
    if popcount_available():
        return BackendChoice("popcount", size)
    return BackendChoice("numpy", f"{size}, but numba is not installed")


@dataclasses.dataclass(frozen=True)
class InfluencePlan:
    """What an influence computation will run on and the memory it expects, before it starts.

    Attributes:
      choice: the backend and why.
      peak_bytes: the expected peak of the influence's own arrays (about; the process
        adds its libraries and the other scores).
      held: what takes that memory, for messages.
    """

    choice: BackendChoice
    peak_bytes: int
    held: str


_TILE_BYTES = 64 << 20  # a GEMM tile or a streamed block of rows, about


def plan_influence(
    num_runs: int,
    num_train: int,
    num_test: int,
    topk: int = 0,
    backend: str = AUTO,
    intervals: bool = False,
    **options,
) -> InfluencePlan:
    """The backend an influence computation will use and the peak memory it expects.

    Args:
      num_runs, num_train, num_test: R, N and N_test.
      topk: 0 for the dense matrix, else k per test example.
      backend: one of `BACKENDS`.
      intervals: whether interval limits are computed beside the values.
      **options: as for `InfluenceAccumulator` (`stream_dense`, the numpy backend's).

    Returns:
      The plan.

    Raises:
      UsageError: as `choose_backend`.
    """
    if sorted(set(options) & set(NUMPY_OPTIONS)) and backend == AUTO:
        backend = "numpy"
    choice = choose_backend(num_runs, num_train, num_test, backend)
    packed = num_runs * ((num_train + 7) // 8 + (num_test + 7) // 8)
    if topk == 0:
        matrix = 4 * num_train * num_test
        streams = options.get("stream_dense") and getattr(
            get_backend(choice.backend), "streams_dense", False
        )
        if streams and not intervals:
            held = (
                f"the runs packed, and blocks of rows of the dense {num_test} x {num_train} matrix"
            )
            return InfluencePlan(choice, packed + _TILE_BYTES, held)
        held = f"the dense {num_test} x {num_train} float32 matrix, held whole"
        if intervals:
            matrix, held = 3 * matrix, held + ", and its interval limits"
        return InfluencePlan(choice, matrix + packed + _TILE_BYTES, held)
    k = min(topk, num_train)
    kept = num_test * k * (4 + 8) * (3 if intervals else 2)  # values, indices; merging
    if choice.backend == "numpy":  # the test correctness of every run, unpacked
        packed += 4 * num_test * (num_runs + 1)
    held = f"the runs packed, and the top-{k} of {num_test} test examples"
    return InfluencePlan(choice, packed + kept + _TILE_BYTES, held)


def popcount_available() -> bool:
    """Whether numba can be imported (checked without importing it)."""
    return get_backend("popcount").why_unavailable() is None


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
        `stream_dense` (`heldout.scores.backends.bitplanes.BitPackedInfluenceAccumulator`)
        is the popcount backend's
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
        unknown = sorted(set(options) - set(NUMPY_OPTIONS) - {"max_matrix_bytes", "stream_dense"})
        if unknown:
            raise TypeError(f"unknown influence options {unknown}")
        # Only the popcount backend streams; the others return the array as always.
        self._stream_dense = bool(options.pop("stream_dense", False))
        numpy_only = sorted(set(options) & set(NUMPY_OPTIONS))
        if numpy_only and backend not in ("auto", "numpy"):
            raise UsageError(f"{numpy_only} are options of the numpy backend, not {backend}")
        self.topk, self.subset_ratio, self.num_runs_expected = topk, subset_ratio, num_runs
        self._options = options
        self._requested = "numpy" if numpy_only else backend
        self.choice: BackendChoice | None = None
        self._impl: InfluenceAccumulatorLike | None = None
        if self._requested != "auto":  # refuse what cannot run before hours of reading
            self._start(choose_backend(num_runs, 1, 1, self._requested))

    def _start(self, choice: BackendChoice) -> None:
        self.choice = choice
        self._impl = get_backend(choice.backend).accumulator(
            self.topk,
            self.subset_ratio,
            self.num_runs_expected,
            stream_dense=self._stream_dense,
            **self._options,
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
