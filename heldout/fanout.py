"""Re-evaluate and cross-check many runs of an experiment, fanned out over Dask.

    runs = select_runs(experiment_dir, subset_ratio=0.7, max_runs=500)
    summary = evaluate_runs(runs, output_dir, scheduler="local", n_workers=4)

One task per run: the worker builds the model, restores the checkpoint, evaluates and
cross-checks it (`heldout.evaluation.check_run`), and sends back a small `RunRecord`. The
client writes each record as JSON to `<output_dir>/<ratio>/<run_id>.json` (temporary name,
then rename) as soon as it arrives, so an interrupted job RESUMES: runs whose record exists
are skipped. A run that fails (truncated checkpoint, wrong architecture, a worker that
died) gets an error record instead and does not stop the others; `retry_errors=True`
evaluates such runs again.

Tasks carry only paths and options. Each worker process opens the data source itself from
(experiment_dir, dataset, data_dir), once, and keeps it for the runs that follow, so no
dataset is pickled and none is loaded once per run. TensorFlow is imported only inside the
workers (or, with `scheduler="none"`, on the first run in this process): a client that
only schedules stays light.

Schedulers: "local" starts a `distributed.LocalCluster` of `n_workers` processes with one
thread each (TensorFlow parallelizes inside a process; the cores are split evenly between
the workers through TF_NUM_INTRAOP_THREADS); an address ("tcp://host:8786") joins an
existing cluster whose workers can import `heldout` and read the experiment; "none"
evaluates in this process, one run after another (tests, laptops, debugging).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from heldout import release
from heldout.io import write_text_atomic

SCHEDULER_LOCAL = "local"
SCHEDULER_NONE = "none"
DEFAULT_WORKERS = 2
MAX_MISMATCHES_RECORDED = 20  # first mismatching indices kept per split in a record
RECORD_VERSION = 1
STATUS_OK = "ok"
STATUS_ERROR = "error"


@dataclasses.dataclass(frozen=True)
class SplitRecord:
    """Cross-check of one release split ("train", "removed" or "test") of one run."""

    matches: int
    total: int
    not_evaluated: int
    accuracy: float | None  # re-evaluated accuracy on the compared examples; None if none
    num_mismatched: int
    first_mismatched_indices: tuple[int, ...]  # positions in the full split, ascending


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What re-evaluating one run found, or why it could not be evaluated.

    `matches` / `total` sum over the splits (`total` includes examples the evaluation did
    not cover). For an error record, `error` holds the message and the numbers are empty.
    """

    run_path: str
    experiment_dir: str
    subset_ratio: float
    ratio_dir_name: str
    run_id: int
    status: str
    error: str | None = None
    checkpoint: str | None = None
    epoch: int | None = None
    global_step: int | None = None
    arch: str | None = None
    num_classes: int | None = None
    splits: dict[str, SplitRecord] = dataclasses.field(default_factory=dict)
    matches: int = 0
    total: int = 0
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def all_match(self) -> bool:
        return self.ok and self.matches == self.total

    def to_json(self) -> str:
        raw = dataclasses.asdict(self)
        raw["version"] = RECORD_VERSION
        return json.dumps(raw, indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "<record>") -> RunRecord:
        """Parses `to_json` output; raises ValueError naming `source` when it is not one."""
        try:
            raw = json.loads(text)
            raw.pop("version", None)
            raw["splits"] = {
                name: SplitRecord(
                    **{
                        **split,
                        "first_mismatched_indices": tuple(split["first_mismatched_indices"]),
                    }
                )
                for name, split in raw.get("splits", {}).items()
            }
            record = cls(**raw)
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as error:
            raise ValueError(f"{source}: not a run record ({error})") from None
        if record.status not in (STATUS_OK, STATUS_ERROR):
            raise ValueError(f"{source}: unknown status {record.status!r}")
        return record


@dataclasses.dataclass(frozen=True)
class FanoutSummary:
    """The outcome over all selected runs: new records and those found from earlier calls.

    `evaluated`: runs evaluated by this call (errors included); `skipped`: runs whose record
    already existed; `errors`: runs whose record (new or earlier) is an error.
    `matches` / `total` sum over the runs with an ok record.
    """

    output_dir: Path
    records: tuple[RunRecord, ...]
    evaluated: int
    skipped: int

    @property
    def runs(self) -> int:
        return len(self.records)

    @property
    def errors(self) -> int:
        return sum(not r.ok for r in self.records)

    @property
    def runs_checked(self) -> int:
        return sum(r.ok for r in self.records)

    @property
    def matches(self) -> int:
        return sum(r.matches for r in self.records if r.ok)

    @property
    def total(self) -> int:
        return sum(r.total for r in self.records if r.ok)

    @property
    def fraction(self) -> float:
        return self.matches / self.total if self.total else float("nan")

    @property
    def all_match(self) -> bool:
        return self.errors == 0 and self.total > 0 and self.matches == self.total


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """How each run is evaluated; small and picklable, shipped with every task."""

    dataset: str | None = None
    data_dir: str | None = None
    splits: tuple[str, ...] = ("train", "test")
    batch_size: int = 500
    arch: str | None = None
    num_classes: int | None = None


# ---------------------------------------------------------------------- choosing the runs


def select_runs(
    experiment_dir: str | os.PathLike,
    subset_ratio: float | None = None,
    max_runs: int | None = None,
) -> list[release.Run]:
    """The experiment's runs that have a checkpoint, by (subset ratio, run id).

    `subset_ratio` keeps one ratio; `max_runs` keeps the first that many (after the ratio
    filter), so repeated calls pick the same runs and resume them.
    """
    if max_runs is not None and max_runs < 1:
        raise ValueError(f"max_runs must be at least 1, got {max_runs}")
    experiment = release.open_experiment(experiment_dir)
    runs = [run for run in experiment.runs if run.has_checkpoint]
    if not runs:
        raise release.ReleaseLayoutError(
            f"{experiment.path}: no run has a checkpoints/ folder to restore"
        )
    if subset_ratio is not None:
        at_ratio = [run for run in experiment.runs_at(subset_ratio) if run.has_checkpoint]
        if not at_ratio:
            ratios = sorted({run.subset_ratio for run in runs})
            raise release.ReleaseLayoutError(
                f"{experiment.path}: no run with a checkpoint at subset ratio {subset_ratio} "
                f"(ratios with checkpoints: {ratios})"
            )
        runs = at_ratio
    return runs[:max_runs] if max_runs is not None else runs


def record_path(output_dir: str | os.PathLike, run: release.Run) -> Path:
    """`<output_dir>/<ratio folder name>/<run_id>.json`: the experiment's own layout."""
    return Path(output_dir) / run.ratio_dir_name / f"{run.run_id}.json"


def read_record(path: str | os.PathLike) -> RunRecord | None:
    """The record at `path`, or None when there is none or it cannot be read (then the
    run is evaluated again: records are written atomically, so this means outside damage)."""
    path = Path(path)
    try:
        return RunRecord.from_json(path.read_text(), str(path))
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------ one run, in a worker


@functools.lru_cache(maxsize=1)
def _worker_source(experiment_dir: str, dataset: str | None, data_dir: str | None):
    """The data source, opened once per worker process and reused for its next runs.

    A cache of one: a worker serves one experiment at a time, and in-memory sources
    (CIFAR, .npz) hold the whole dataset.
    """
    from heldout import label_noise

    # The labels the runs were trained and scored on (corrupted ones where recorded).
    return label_noise.experiment_source(experiment_dir, dataset, data_dir)


def _split_record(check) -> SplitRecord:
    mismatched = check.mismatched_indices
    accuracy = check.accuracy if math.isfinite(check.accuracy) else None
    return SplitRecord(
        matches=int(check.matches),
        total=int(check.total + check.not_evaluated),
        not_evaluated=int(check.not_evaluated),
        accuracy=accuracy,
        num_mismatched=int(mismatched.size),
        first_mismatched_indices=tuple(int(i) for i in mismatched[:MAX_MISMATCHES_RECORDED]),
    )


def _base_fields(run: release.Run) -> dict:
    return {
        "run_path": str(run.path),
        "experiment_dir": str(run.experiment_dir),
        "subset_ratio": float(run.subset_ratio),
        "ratio_dir_name": run.ratio_dir_name,
        "run_id": int(run.run_id),
    }


def error_record(run: release.Run, error: BaseException, elapsed_s: float = 0.0) -> RunRecord:
    message = str(error) or type(error).__name__
    if not isinstance(error, ValueError):  # our errors are ValueErrors with clear messages
        message = f"{type(error).__name__}: {message}"
    return RunRecord(
        **_base_fields(run), status=STATUS_ERROR, error=message, elapsed_s=round(elapsed_s, 3)
    )


def evaluate_run(run: release.Run, options: EvalOptions) -> RunRecord:
    """Restores, evaluates and cross-checks one run; a failure becomes an error record.

    This is the task each worker runs. It never raises for a bad run, so one truncated
    checkpoint among thousands costs one record, not the job.
    """
    start = time.perf_counter()
    try:
        from heldout import evaluation

        source = _worker_source(str(run.experiment_dir), options.dataset, options.data_dir)
        check = evaluation.check_run(
            run,
            source,
            splits=options.splits,
            arch=options.arch,
            num_classes=options.num_classes,
            meta=release.read_experiment_meta(Path(run.experiment_dir)),
            batch_size=options.batch_size,
        )
    except Exception as error:  # noqa: BLE001 - recorded; the other runs go on
        return error_record(run, error, time.perf_counter() - start)
    return RunRecord(
        **_base_fields(run),
        status=STATUS_OK,
        checkpoint=str(check.restore.path),
        epoch=int(check.restore.epoch),
        global_step=int(check.restore.global_step),
        arch=check.arch,
        num_classes=int(check.num_classes),
        splits={name: _split_record(c) for name, c in check.checks.items()},
        matches=int(check.matches),
        total=int(check.total),
        elapsed_s=round(time.perf_counter() - start, 3),
    )


# ------------------------------------------------------------------------- fanning out


Progress = Callable[[RunRecord, bool], None]  # (record, reused from an earlier call)


def check_scheduler(scheduler: str) -> None:
    """Raises ValueError unless `scheduler` is "local", "none" or an address."""
    if scheduler in (SCHEDULER_LOCAL, SCHEDULER_NONE) or "://" in scheduler:
        return
    raise ValueError(
        f"scheduler must be {SCHEDULER_LOCAL!r}, {SCHEDULER_NONE!r} or a scheduler address "
        f"such as 'tcp://10.0.0.5:8786'; got {scheduler!r}"
    )


def _local_cluster(n_workers: int, memory_limit: str | float | None):
    """A LocalCluster of single-threaded worker processes sharing the cores evenly."""
    from distributed import LocalCluster

    threads = str(max(1, (os.cpu_count() or 1) // n_workers))
    env = {
        "TF_NUM_INTRAOP_THREADS": threads,
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        # Several workers may share one GPU: each takes memory as it needs it.
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    }
    kwargs = {} if memory_limit is None else {"memory_limit": memory_limit}
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        # No dashboard; Dask's HTTP routes still listen: on a free local port, not 8787,
        # so that concurrent jobs on one machine do not collide.
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        env=env,
        **kwargs,
    )


def _run_distributed(
    scheduler: str,
    n_workers: int,
    memory_limit,
    pending: Sequence[release.Run],
    options: EvalOptions,
    finish: Callable[[release.Run, RunRecord], None],
) -> None:
    from distributed import Client, as_completed

    cluster = client = None
    try:
        if scheduler == SCHEDULER_LOCAL:
            cluster = _local_cluster(n_workers, memory_limit)
            client = Client(cluster)
        else:
            client = Client(scheduler)
        futures = client.map(evaluate_run, pending, options=options, pure=False)
        run_of = {future.key: run for future, run in zip(futures, pending, strict=True)}
        for future in as_completed(futures):
            run = run_of[future.key]
            try:
                record = future.result()
            except Exception as error:  # noqa: BLE001 - e.g. KilledWorker: the run is recorded
                if future.status != "error":  # cancelled or lost: the cluster failed, not the run
                    raise
                record = error_record(run, error)
            future.release()  # results are small, but thousands of them add up
            finish(run, record)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def evaluate_runs(
    runs: Iterable[release.Run],
    output_dir: str | os.PathLike,
    options: EvalOptions | None = None,
    scheduler: str = SCHEDULER_LOCAL,
    n_workers: int = DEFAULT_WORKERS,
    retry_errors: bool = False,
    progress: Progress | None = None,
    memory_limit: str | float | None = None,
) -> FanoutSummary:
    """Evaluates every run that has no record in `output_dir` yet; records each result.

    Args:
      runs: the runs to check (see `select_runs`).
      output_dir: where the per-run JSON records go (created if missing).
      options: data, splits, batch size and model overrides for every run.
      scheduler: "local" (a LocalCluster of `n_workers` processes), "none" (this process,
        sequentially) or the address of a running Dask scheduler.
      n_workers: worker processes of the local cluster; each evaluates one run at a time.
      retry_errors: evaluate runs with an error record again (default: keep the record, so
        a hopeless checkpoint is not retried on every call).
      progress: called with (record, reused) once per run, as each finishes.
      memory_limit: per-worker memory limit of the local cluster (Dask's default: the
        machine's memory split between the workers).
    """
    check_scheduler(scheduler)
    if n_workers < 1:
        raise ValueError(f"n_workers must be at least 1, got {n_workers}")
    options = options or EvalOptions()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    runs = list(runs)

    records: dict[Path, RunRecord] = {}
    pending = []
    for run in runs:
        found = read_record(record_path(output_dir, run))
        if found is not None and (found.ok or not retry_errors):
            records[run.path] = found
            if progress is not None:
                progress(found, True)
        else:
            pending.append(run)

    def finish(run: release.Run, record: RunRecord) -> None:
        write_text_atomic(record_path(output_dir, run), record.to_json())
        records[run.path] = record
        if progress is not None:
            progress(record, False)

    if pending and scheduler == SCHEDULER_NONE:
        for run in pending:
            finish(run, evaluate_run(run, options))
    elif pending:
        _run_distributed(scheduler, n_workers, memory_limit, pending, options, finish)

    return FanoutSummary(
        output_dir=output_dir,
        records=tuple(records[run.path] for run in runs if run.path in records),
        evaluated=len(pending),
        skipped=len(runs) - len(pending),
    )


def evaluate_experiment(
    experiment_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    subset_ratio: float | None = None,
    max_runs: int | None = None,
    **kwargs,
) -> FanoutSummary:
    """`select_runs` then `evaluate_runs` (keyword arguments go to `evaluate_runs`)."""
    return evaluate_runs(select_runs(experiment_dir, subset_ratio, max_runs), output_dir, **kwargs)
