"""Training fanned out over Dask: each group of runs is a task that a worker writes.

    result = train_on_cluster(config, "experiments/cifar10", scheduler="local", n_workers=2)

The client prepares the folder as `train_experiment` does; each group is trained by the
same code on a worker, so runs are bit-identical to a single process's (same thread
count); dead workers and failed runs are reported, and a rerun trains what is missing.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from heldout import cluster
from heldout.errors import UsageError, describe_error
from heldout.release import layout as release
from heldout.training import experiment, locks, resume
from heldout.training.config import TrainingConfig
from heldout.training.events import (
    Event,
    RunKey,
    RunSetAside,
    RunsSkipped,
    RunWritten,
    TemporariesRemoved,
)

DEFAULT_MAX_WORKER_DEATHS = 3  # Dask's own default for allowed-failures


@dataclasses.dataclass(frozen=True)
class WrittenRun:
    """A run a task wrote, with its final accuracies (as `RunWritten`)."""

    subset_ratio: float
    run_id: int
    path: str
    train_accuracy: float
    heldout_accuracy: float
    test_accuracy: float


@dataclasses.dataclass(frozen=True)
class FailedRun:
    """A run that was not written, and why; `traceback` for errors that are bugs."""

    subset_ratio: float
    run_id: int
    path: str
    error: str
    traceback: str | None = None


@dataclasses.dataclass(frozen=True)
class GroupRecord:
    """What one task sends back: small, whatever the size of the models."""

    subset_ratio: float
    run_ids: tuple[int, ...]
    written: tuple[WrittenRun, ...] = ()
    skipped: tuple[int, ...] = ()  # finished by another process meanwhile
    busy: tuple[int, ...] = ()  # claimed by another process
    set_aside: tuple[RunSetAside, ...] = ()
    failed: tuple[FailedRun, ...] = ()
    worker: str = ""  # host:pid:thread that ran it
    elapsed_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class ClusterStarted:
    """Sent once connected: where the scheduler and its dashboard are, what tasks ask."""

    scheduler_address: str
    dashboard_link: str | None
    workers: int
    resources: dict | None
    tasks: int


@dataclasses.dataclass(frozen=True)
class RunFailed:
    """Sent for each run a task could not write."""

    run: FailedRun


@dataclasses.dataclass(frozen=True)
class ClusterTrainingResult:
    """What one `train_on_cluster` call did; `failed` runs are not written (re-run to retry)."""

    experiment_dir: Path
    written: tuple[release.Run, ...]
    skipped: tuple[RunKey, ...]
    set_aside: tuple[RunSetAside, ...] = ()
    busy: tuple[RunKey, ...] = ()
    failed: tuple[FailedRun, ...] = ()
    tasks: int = 0
    dashboard_link: str | None = None
    task_seconds: tuple[float, ...] = ()  # each finished task's time in its worker


def _run_path(experiment_dir: str | os.PathLike, ratio: float, run_id: int) -> str:
    return str(Path(experiment_dir) / release.ratio_dir_name(ratio) / str(run_id))


def failed_runs(
    experiment_dir: str | os.PathLike,
    ratio: float,
    run_ids: Sequence[int],
    error: BaseException,
) -> tuple[FailedRun, ...]:
    """A `FailedRun` per run; errors that are not the toolkit's keep their traceback."""
    message, trace = describe_error(error)
    return tuple(
        FailedRun(float(ratio), int(r), _run_path(experiment_dir, ratio, r), message, trace)
        for r in run_ids
    )


def train_group_task(
    config: TrainingConfig, experiment_dir: str, subset_ratio: float, run_ids: Sequence[int]
) -> GroupRecord:
    """The task: trains one group with `experiment.train_group`; never raises for a run.

    A run's own failure becomes `failed` entries (the runs of the group not written), so
    one bad group costs its runs, not the job; only the death of the process ends the
    task otherwise (and Dask then reruns it elsewhere).
    """
    start = time.perf_counter()
    written: list[WrittenRun] = []

    def collect(event: Event) -> None:
        if isinstance(event, RunWritten):
            written.append(
                WrittenRun(
                    float(event.run.subset_ratio),
                    int(event.run.run_id),
                    str(event.run.path),
                    float(event.train_accuracy),
                    float(event.heldout_accuracy),
                    float(event.test_accuracy),
                )
            )

    fields = {}
    try:
        result = experiment.train_group(config, experiment_dir, subset_ratio, run_ids, collect)
        fields = {
            "skipped": tuple(int(r) for _, r in result.skipped),
            "busy": tuple(int(r) for _, r in result.busy),
            "set_aside": tuple(result.set_aside),
            # Not finished: failed runs to the caller (named, exit status 1), no traceback.
            "failed": tuple(
                FailedRun(event.subset_ratio, event.run_id, str(event.path), event.describe())
                for event in result.diverged
            ),
        }
    except Exception as error:  # noqa: BLE001 - reported per run, with a traceback for bugs
        done = {run.run_id for run in written}
        fields = {
            "failed": failed_runs(
                experiment_dir, subset_ratio, [r for r in run_ids if r not in done], error
            )
        }
    return GroupRecord(
        subset_ratio=float(subset_ratio),
        run_ids=tuple(int(r) for r in run_ids),
        written=tuple(written),
        worker=f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}",
        elapsed_s=round(time.perf_counter() - start, 3),
        **fields,
    )


def task_key(config: TrainingConfig, ratio: float, run_ids: Sequence[int]) -> str:
    """A readable, unique Dask key (the dashboard shows it): ratio and run ids."""
    ids = f"{run_ids[0]}-{run_ids[-1]}" if len(run_ids) > 1 else f"{run_ids[0]}"
    return f"train-{release.ratio_dir_name(ratio)}-{ids}-seed{config.seed}-{os.urandom(4).hex()}"


def train_on_cluster(
    config: TrainingConfig,
    output_dir: str | os.PathLike,
    scheduler: str = cluster.SCHEDULER_LOCAL,
    n_workers: int = 2,
    on_event: Callable[[Event], None] | None = None,
    gpu: str = "auto",
    max_worker_deaths: int = DEFAULT_MAX_WORKER_DEATHS,
    memory_limit: str | float | None = None,
    pack_outputs: bool = True,
) -> ClusterTrainingResult:
    """Trains every unfinished run of `config` into `output_dir`, one Dask task a group.

    Args:
      config: what to train.
      output_dir: the experiment folder (created if missing); workers must see it at the
        same path (a shared file system on a cluster).
      scheduler: "local" (a LocalCluster of `n_workers` processes) or a scheduler
        address; "none" trains in this process (`train_experiment`).
      n_workers: worker processes of a local cluster (the cores split evenly).
      on_event: receives the events listed in the module docstring.
      gpu: "auto", "yes" or "no": whether each task asks for `{"GPU": 1}`.
      max_worker_deaths: deaths of a task's worker after which the task is given up (its
        runs reported failed); Dask's `distributed.scheduler.allowed-failures`, set for a
        local cluster (a running scheduler keeps its own setting).
      memory_limit: per-worker memory limit of a local cluster.
      pack_outputs: pack each ratio's outputs once all its runs are written
        (`experiment.pack_written_outputs`, here once the tasks are done).

    Returns:
      What was written, skipped, set aside, left to other processes, and what failed.

    Raises:
      UsageError: a bad scheduler, worker count or `gpu`.
      TrainingError, DatasetError, LockBusyError: as `train_experiment`.
    """
    cluster.check_scheduler(scheduler)
    cluster.check_workers(n_workers)
    if max_worker_deaths < 0:
        raise UsageError(f"max_worker_deaths must be at least 0, got {max_worker_deaths}")
    notify = on_event or (lambda event: None)
    experiment_dir = Path(output_dir).absolute()
    if scheduler == cluster.SCHEDULER_NONE:
        single = experiment.train_experiment(config, experiment_dir, notify, pack_outputs)
        return ClusterTrainingResult(
            single.experiment_dir, single.written, single.skipped, single.set_aside, single.busy
        )
    written: list[release.Run] = []
    skipped: list[RunKey] = []
    set_aside: list[RunSetAside] = []
    busy: list[RunKey] = []
    failed: list[FailedRun] = []
    task_seconds: list[float] = []
    dashboard = None
    with experiment.prepared_experiment(config, experiment_dir, notify) as (data, states):
        del data  # the workers load their own; the client needs only the plan
        skipped.extend(states.finished)
        groups = experiment.training_groups(config, states.pending)
        if groups:
            dashboard = _run_tasks(
                config,
                experiment_dir,
                groups,
                scheduler,
                n_workers,
                gpu,
                max_worker_deaths,
                memory_limit,
                notify,
                (written, skipped, set_aside, busy, failed, task_seconds),
            )
        if pack_outputs and (written or skipped):
            experiment.pack_written_outputs(config, experiment_dir, notify)
    if failed:
        _remove_leftovers(experiment_dir, notify)
    return ClusterTrainingResult(
        experiment_dir,
        tuple(sorted(written, key=lambda r: (r.subset_ratio, r.run_id))),
        tuple(skipped),
        tuple(set_aside),
        tuple(busy),
        tuple(failed),
        tasks=len(groups),
        dashboard_link=dashboard,
        task_seconds=tuple(task_seconds),
    )


def _run_tasks(
    config,
    experiment_dir: Path,
    groups,
    scheduler,
    n_workers,
    gpu,
    max_worker_deaths,
    memory_limit,
    notify,
    out,
) -> str | None:
    """Submits a task per group and files each record as it arrives; the dashboard link."""
    import dask
    from distributed import as_completed

    written, skipped, set_aside, busy, failed, task_seconds = out
    settings = {"distributed.scheduler.allowed-failures": int(max_worker_deaths)}
    with (
        dask.config.set(settings),
        cluster.connect(scheduler, n_workers, memory_limit, dashboard=True) as client,
    ):
        resources = cluster.task_resources(client, gpu)
        dashboard = cluster.dashboard_link(client)
        workers = len(client.scheduler_info().get("workers", {}))
        notify(ClusterStarted(client.scheduler.address, dashboard, workers, resources, len(groups)))
        group_of = {}
        futures = []
        for ratio, run_ids in groups:
            future = client.submit(
                train_group_task,
                config,
                str(experiment_dir),
                ratio,
                run_ids,
                key=task_key(config, ratio, run_ids),
                pure=False,
                resources=resources,
            )
            group_of[future.key] = (ratio, run_ids)
            futures.append(future)
        for future in as_completed(futures):
            ratio, run_ids = group_of[future.key]
            try:
                record = future.result()
            except Exception as error:  # noqa: BLE001 - KilledWorker: the task's runs failed
                if future.status != "error":  # cancelled or lost: the cluster failed
                    raise
                record = GroupRecord(
                    ratio, run_ids, failed=failed_runs(experiment_dir, ratio, run_ids, error)
                )
            future.release()
            task_seconds.append(record.elapsed_s)
            _file(record, experiment_dir, notify, written, skipped, set_aside, busy, failed)
    return dashboard


def _file(record: GroupRecord, experiment_dir, notify, written, skipped, set_aside, busy, failed):
    """Adds one task's record to the call's lists and sends its events."""
    ratio = record.subset_ratio
    for done in record.written:
        run = release.Run(
            experiment_dir=experiment_dir,
            subset_ratio=done.subset_ratio,
            ratio_dir_name=release.ratio_dir_name(done.subset_ratio),
            run_id=done.run_id,
            path=Path(done.path),
        )
        written.append(run)
        notify(RunWritten(run, done.train_accuracy, done.heldout_accuracy, done.test_accuracy))
    for event in record.set_aside:
        set_aside.append(event)
        notify(event)
    if record.skipped:
        skipped.extend((ratio, r) for r in record.skipped)
        notify(RunsSkipped(ratio, record.skipped, "written by another process"))
    if record.busy:
        busy.extend((ratio, r) for r in record.busy)
        notify(RunsSkipped(ratio, record.busy, "being trained by another process"))
    for run in record.failed:
        failed.append(run)
        notify(RunFailed(run))


def _remove_leftovers(experiment_dir: Path, notify) -> None:
    """After failures: remove half-written temporaries, if no other trainer is working."""
    with locks.TrainingLock(experiment_dir) as training_lock:
        if training_lock.alone:
            removed = resume.remove_stale_temporaries(experiment_dir)
            if removed:
                notify(TemporariesRemoved(tuple(removed)))
