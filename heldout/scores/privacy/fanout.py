"""`heldout privacy`'s pass over the runs, fanned out over Dask workers.

Each task reads a contiguous share of the ratio's runs through the reader of one process
(`iter_run_statistics`, every check) and returns its partial `ShadowSums`, shifted by the
ratio's first run as in one pass, and its counts; partials add in a fixed tree
(`heldout.scores.shares`). The targets' own arrays are read on the client.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Sequence

import heldout.cluster as cluster
from heldout.errors import HeldoutError, UsageError
from heldout.release.layout import Experiment, Run
from heldout.release.reading import ProgressCallback
from heldout.scores.counts import ScoreAccumulator
from heldout.scores.privacy.attacks import MARGIN
from heldout.scores.privacy.audit import ShadowPass
from heldout.scores.privacy.reading import RunStatistic, iter_run_statistics
from heldout.scores.privacy.shadows import ShadowSums
from heldout.scores.shares import default_share, reduce_shares

__all__ = [
    "PartialShadows",
    "add_shadow_partials",
    "read_shadow_pass_on_cluster",
    "read_shadow_share",
]


@dataclasses.dataclass
class PartialShadows:
    """The shadow sums and counts of a contiguous share of runs (`first` .. `first + runs`).

    Attributes:
      first, runs: the share's position in the run order, and its length.
      sums: its `ShadowSums`, shifted by the ratio's first run (None where it failed).
      counts: its counts for memorization and C-scores.
      failure: the one-line error that stopped the share, or None; returned rather than
        raised (see `heldout.scores.shares`).
    """

    first: int
    runs: int
    sums: ShadowSums | None
    counts: ScoreAccumulator
    failure: HeldoutError | None = None


def read_shadow_share(
    experiment: Experiment,
    first: int,
    runs: Sequence[Run],
    reference: Run,
    statistic: str = MARGIN,
    outputs_dir: str | os.PathLike | None = None,
) -> PartialShadows:
    """The task: sums a share of runs, shifted by the `reference` run's statistic.

    Args:
      experiment: the experiment (its `runs` may be only those this share reads).
      first: the share's position in the run order.
      runs: its runs.
      reference: the run every share shifts by (the ratio's first); the share that starts
        with it reads it once.
      statistic, outputs_dir: as `iter_run_statistics`.

    Returns:
      The share's `PartialShadows`; an expected error (a bad run) is its `failure`.
    """
    counts = ScoreAccumulator()
    try:
        sums = None  # sized by the reference, as one pass is by the first run
        if first != 0 or runs[0] != reference:
            ahead = iter_run_statistics(experiment, [reference], statistic, outputs_dir)
            shift = next(ahead).statistic
            sums = ShadowSums(shift.size, shift)
        for run in iter_run_statistics(experiment, runs, statistic, outputs_dir):
            if sums is None:
                sums = ShadowSums(run.mask.size)
            sums.add(run.mask, run.statistic)
            counts.add(0.0, run.aux)
    except HeldoutError as error:  # bugs still raise, with Dask's traceback
        return PartialShadows(first, len(runs), None, ScoreAccumulator(), error)
    return PartialShadows(first, len(runs), sums, counts)


def add_shadow_partials(a: PartialShadows, b: PartialShadows) -> PartialShadows:
    """The sums of two adjacent shares (`a` first); a failed share's failure is passed on.
    Neither is changed (a Dask task must not change its inputs)."""
    if a.first > b.first:
        a, b = b, a
    for partial in (a, b):
        if partial.failure is not None:
            return partial
    try:
        sums = copy.deepcopy(a.sums if a.sums is not None else b.sums)
        if a.sums is not None and b.sums is not None:
            sums.merge(b.sums)
        counts = copy.deepcopy(a.counts).merge(b.counts)
    except HeldoutError as error:
        return PartialShadows(a.first, a.runs + b.runs, None, ScoreAccumulator(), error)
    return PartialShadows(a.first, a.runs + b.runs, sums, counts)


def read_shadow_pass_on_cluster(
    experiment: Experiment,
    runs: Sequence[Run],
    target_run_ids: Sequence[int],
    statistic: str = MARGIN,
    outputs_dir: str | os.PathLike | None = None,
    scheduler: str = cluster.SCHEDULER_LOCAL,
    n_workers: int = 2,
    progress: bool | ProgressCallback = False,
    runs_per_share: int | None = None,
) -> ShadowPass:
    """`heldout.scores.privacy.audit.read_shadow_pass` of the runs, read by Dask workers.

    The sums equal one pass's up to float64 rounding (they are added in another order;
    docs/privacy.md states the tolerance); the counts and the targets' arrays exactly.

    Args:
      experiment: from `heldout.release.layout.open_experiment`; workers must see its
        files (and `outputs_dir`) at the same paths.
      runs: the runs of one ratio, in order (targets among them).
      target_run_ids: the targets, read here on the client.
      statistic, outputs_dir: as `iter_run_statistics`.
      scheduler: "local" (a LocalCluster of `n_workers` processes) or a scheduler address.
      n_workers: processes of a local cluster.
      progress: True for a tqdm bar over runs, or a callable `progress(done, total)`.
      runs_per_share: runs per task; default `heldout.scores.shares.default_share`.

    Returns:
      The `ShadowPass`, for `compute_privacy` / `compute_attack_scores`.

    Raises:
      OutputsError, UsageError: as `iter_run_statistics` (a bad run, named), a target not
        among the runs, "none" or a bad scheduler, or a bad share size.
    """
    cluster.check_scheduler(scheduler)
    cluster.check_workers(n_workers)
    if scheduler == cluster.SCHEDULER_NONE:
        raise UsageError("read_shadow_pass_on_cluster needs a cluster: 'local' or an address")
    if runs_per_share is not None and runs_per_share < 1:
        raise UsageError(f"runs_per_share must be at least 1, got {runs_per_share}")
    runs = list(runs)
    by_id = {run.run_id: run for run in runs}
    missing = sorted({int(i) for i in target_run_ids} - set(by_id))
    if missing:
        raise UsageError(f"target runs {missing[:10]} are not among the {len(runs)} runs read")
    # The targets first: a bad one is refused before a cluster starts.
    targets = {
        run.run_id: RunStatistic(run.run_id, run.mask, run.statistic, None)
        for run in iter_run_statistics(
            experiment, [by_id[int(i)] for i in sorted(set(target_run_ids))], statistic, outputs_dir
        )
    }
    if not runs:
        return ShadowPass(None, ScoreAccumulator(), targets)
    per_share = runs_per_share or default_share(len(runs), n_workers)
    shares = []
    for first in range(0, len(runs), per_share):
        share = runs[first : first + per_share]
        needed = tuple(share) + (() if first == 0 else (runs[0],))
        # Each task gets only its own runs to pickle, not the whole experiment's.
        narrowed = dataclasses.replace(experiment, runs=needed)
        shares.append((len(share), (narrowed, first, share, runs[0], statistic, outputs_dir)))
    root = reduce_shares(
        scheduler,
        n_workers,
        read_shadow_share,
        shares,
        add_shadow_partials,
        progress,
        name="privacy-share",
    )
    return ShadowPass(root.sums, root.counts, targets)
