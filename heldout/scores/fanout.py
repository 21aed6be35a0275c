"""`score_experiment` with the reading fanned out over Dask workers (`score_on_cluster`).

Workers read contiguous shares of runs and return `PartialScores`: the integer counts
and, where influence, its intervals or pairs are asked for, the score-ratio runs packed
8 examples to a byte. Partials are added in a tree on the workers and fed, in run order,
into the very accumulators `score_experiment` uses, so the results equal the
single-process ones exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

import heldout.cluster as cluster
from heldout.errors import AuxArraysError, HeldoutError, UsageError
from heldout.release.layout import Experiment
from heldout.release.reading import (
    ProgressCallback,
    RunLike,
    SplitSizeCheck,
    majority_split_sizes,
    read_runs,
    split_sizes_of,
)
from heldout.scores.counts import ScoreAccumulator
from heldout.scores.experiment import ScoreState, score_experiment
from heldout.scores.request import (
    DEFAULT_REQUEST,
    ScoreRequest,
    known_split_sizes,
    runs_to_read,
)
from heldout.scores.results import ExperimentScores
from heldout.scores.shares import RUNS_PER_SHARE, default_share, reduce_shares

__all__ = [
    "RUNS_PER_SHARE",
    "PackedRun",
    "PartialScores",
    "add_partials",
    "cluster_scorer",
    "default_share",
    "read_share",
    "score_on_cluster",
]


@dataclasses.dataclass(frozen=True)
class PackedRun:
    """One run as the score-ratio accumulators read it, 8 examples to a byte.

    Has the methods of `AuxArrays` those accumulators call (`train_mask`,
    `train_correctness`, `test_correctness`, `num_train`, `num_test`, `source`).
    """

    source: str
    num_train: int
    num_test: int
    mask_bits: np.ndarray  # uint8 [ceil(N / 8)]
    train_correct_bits: np.ndarray
    test_correct_bits: np.ndarray

    @classmethod
    def of(cls, aux) -> PackedRun:
        return cls(
            str(aux.source),
            int(aux.num_train),
            int(aux.num_test),
            np.packbits(aux.train_mask()),
            np.packbits(aux.train_correctness()),
            np.packbits(aux.test_correctness()),
        )

    def train_mask(self) -> np.ndarray:
        return np.unpackbits(self.mask_bits, count=self.num_train).astype(bool)

    def train_correctness(self) -> np.ndarray:
        return np.unpackbits(self.train_correct_bits, count=self.num_train).astype(bool)

    def test_correctness(self) -> np.ndarray:
        return np.unpackbits(self.test_correct_bits, count=self.num_test).astype(bool)


@dataclasses.dataclass
class PartialScores:
    """The sufficient statistics of a contiguous share of runs (`first` .. `first + runs`).

    Attributes:
      first, runs: the share's position in the run order, and its length.
      counts: the per-ratio counts of the share's readable runs.
      packed: the share's readable runs at the score ratio, in order (empty when no
        influence, intervals or pairs are asked for).
      skipped: (position, message) of each bad run skipped.
      failure: the one-line error that stopped the share (a bad run without skipping), or
        None. Returned rather than raised: a task that raises makes every Dask worker log
        "Compute Failed" and a traceback before the command's one line.
    """

    first: int
    runs: int
    counts: ScoreAccumulator
    packed: list[PackedRun] = dataclasses.field(default_factory=list)
    skipped: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    failure: HeldoutError | None = None


def read_share(
    first: int,
    items: Sequence[tuple[str, float]],
    subset_ratios: Sequence[float],
    pack_ratio: float | None,
    size_check: SplitSizeCheck,
    skip_bad_runs: bool,
    threads: int | None = None,
) -> PartialScores:
    """The task: reads `(aux path, subset ratio)` items and counts them.

    Args:
      first: the share's position in the run order.
      items: its runs' aux-array files and ratios.
      subset_ratios: the ratios the counts report (as the single process declares them).
      pack_ratio: keep the runs of this ratio packed (None: keep none).
      size_check: the split sizes every run must have.
      skip_bad_runs: report bad runs and go on (else the first one raises, naming it).
      threads: reader threads (default: this worker's share of the cores).

    Returns:
      The share's statistics; an expected error (a bad run, without `skip_bad_runs`) is
      its `failure`, which the client raises.
    """
    counts = ScoreAccumulator(subset_ratios)
    partial = PartialScores(first, len(items), counts)
    ratio_of = {path: ratio for path, ratio in items}
    position = {path: first + k for k, (path, _) in enumerate(items)}
    pack_key = None if pack_ratio is None else round(float(pack_ratio), 9)

    def bad(run: RunLike, error: AuxArraysError) -> None:
        partial.skipped.append((position[str(run)], str(error)))

    try:
        for path, aux in read_runs(
            [path for path, _ in items],
            workers=threads or cluster.threads_per_worker(1),
            skip_bad_runs=skip_bad_runs,
            on_bad_run=bad,
            size_check=size_check,
            ratios=[ratio for _, ratio in items],  # a run in another ratio's folder is bad
        ):
            ratio = ratio_of[str(path)]
            counts.add(ratio, aux)
            if pack_key is not None and round(float(ratio), 9) == pack_key:
                partial.packed.append(PackedRun.of(aux))
    except HeldoutError as error:  # bugs still raise, with Dask's traceback
        partial.failure = error
        partial.packed.clear()
    return partial


def add_partials(a: PartialScores, b: PartialScores) -> PartialScores:
    """The statistics of two adjacent shares (`a` first): counts added, runs in order; a
    failed share's failure is passed on."""
    if a.first > b.first:
        a, b = b, a
    for partial in (a, b):
        if partial.failure is not None:
            return partial
    return PartialScores(
        first=a.first,
        runs=a.runs + b.runs,
        counts=a.counts.merge(b.counts),
        packed=a.packed + b.packed,
        skipped=a.skipped + b.skipped,
    )


def _size_check(
    experiment: Experiment, runs: Sequence, skip_bad_runs: bool, threads: int
) -> SplitSizeCheck:
    """The sizes every share checks its runs against, settled before the fan-out (a
    share's first run must not decide them, nor could it for the others)."""
    known = known_split_sizes(experiment)
    if known is not None:
        return known
    if skip_bad_runs:
        return majority_split_sizes(runs, threads)
    for run in runs:  # as in one read: the first readable run sets the sizes
        sizes = split_sizes_of(run.aux_path)
        if sizes is not None:
            return SplitSizeCheck(*sizes, reference=str(run.aux_path))
    return SplitSizeCheck()


def score_on_cluster(
    experiment: Experiment,
    request: ScoreRequest = DEFAULT_REQUEST,
    scheduler: str = cluster.SCHEDULER_LOCAL,
    n_workers: int = 2,
    on_bad_run: Callable[[RunLike, AuxArraysError], None] | None = None,
    progress: bool | ProgressCallback = False,
    runs_per_share: int | None = None,
) -> ExperimentScores:
    """`heldout.scores.experiment.score_experiment`, with the runs read by Dask workers.

    Args:
      experiment: from `heldout.release.layout.open_experiment`; workers must see its
        files at the same paths.
      request: what to compute, as for `score_experiment`.
      scheduler: "local" (a LocalCluster of `n_workers` processes) or a scheduler
        address; "none" is `score_experiment` in this process.
      n_workers: processes of a local cluster.
      on_bad_run: called with each bad run skipped (`request.skip_bad_runs`).
      progress: True for a tqdm bar over runs (moves a share at a time), or a callable
        `progress(done, total)`.
      runs_per_share: runs per task; default about four tasks per worker, at most
        `RUNS_PER_SHARE` runs each.

    Returns:
      The same `ExperimentScores` `score_experiment` returns for this request.

    Raises:
      As `score_experiment`; UsageError for a bad scheduler or share size.
    """
    cluster.check_scheduler(scheduler)
    cluster.check_workers(n_workers)
    if runs_per_share is not None and runs_per_share < 1:
        raise UsageError(f"runs_per_share must be at least 1, got {runs_per_share}")
    if scheduler == cluster.SCHEDULER_NONE:
        return score_experiment(experiment, request, on_bad_run=on_bad_run, progress=progress)
    selection = runs_to_read(experiment, request)
    at_ratio = (
        len(experiment.runs_at(selection.score_ratio)) if selection.score_ratio is not None else 0
    )
    # Built first, as in one process: a backend that cannot run is refused before reading.
    state = ScoreState(selection, request, at_ratio)
    runs = list(selection.runs)
    if not runs:
        return state.result(experiment, [])
    skip_bad_runs = request.skip_bad_runs
    size_check = _size_check(experiment, runs, skip_bad_runs, cluster.threads_per_worker(1))
    pack_ratio = selection.score_ratio if state.needs_score_ratio_runs else None
    items = [(str(run.aux_path), float(run.subset_ratio)) for run in runs]
    per_share = runs_per_share or default_share(len(runs), n_workers)
    merged = _fan_out(
        scheduler,
        n_workers,
        items,
        selection.subset_ratios,
        pack_ratio,
        size_check,
        skip_bad_runs,
        per_share,
        progress,
    )
    skipped, skipped_runs = [], []
    for position, message in sorted(merged.skipped):
        skipped.append(message)
        skipped_runs.append(runs[position])
        if on_bad_run is not None:
            on_bad_run(runs[position], AuxArraysError(message))
    state.counts.merge(merged.counts)
    for packed in merged.packed:
        state.add_at_score_ratio(packed)
    merged.packed.clear()
    return state.result(experiment, skipped, skipped_runs)


def _fan_out(
    scheduler, n_workers, items, ratios, pack_ratio, size_check, skip, per_share, progress
) -> PartialScores:
    """One task per share, partials added pairwise in a tree; the root's statistics."""
    # A local worker reads with its share of the cores; a remote one with all of its own.
    threads = (
        cluster.threads_per_worker(n_workers) if scheduler == cluster.SCHEDULER_LOCAL else None
    )
    shares = []
    for first in range(0, len(items), per_share):
        share = items[first : first + per_share]
        args = (first, share, ratios, pack_ratio, size_check, skip, threads)
        shares.append((len(share), args))
    return reduce_shares(scheduler, n_workers, read_share, shares, add_partials, progress)


def cluster_scorer(options) -> Callable[..., ExperimentScores]:
    """`score_experiment`'s signature on the cluster a `heldout.cli.options.ClusterOptions` names.

    `workers` (reader threads in one process) is accepted and ignored: on a cluster each
    worker reads with its share of the cores.
    """

    def score(
        experiment: Experiment,
        request: ScoreRequest = DEFAULT_REQUEST,
        workers: int | None = None,
        **keywords,
    ):
        del workers
        return score_on_cluster(
            experiment, request, options.scheduler, options.local_workers, **keywords
        )

    return score
