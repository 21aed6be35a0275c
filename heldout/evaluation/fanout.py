"""Re-evaluate and cross-check many runs of an experiment, fanned out over Dask.

    runs = select_runs(experiment_dir, subset_ratio=0.7, max_runs=500)
    summary = evaluate_runs(runs, output_dir, scheduler="local", n_workers=4)

One task per run: the worker restores the checkpoint, evaluates and cross-checks it
(`heldout.evaluation.evaluate.check_run`) and sends back a small run record
(`heldout.evaluation.records`), written as soon as it arrives, so an interrupted job
resumes. An output folder belongs to one experiment (`evaluation.json` says which) and a
lock file keeps two calls out of it. Clusters start in `heldout.cluster`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from heldout import cluster
from heldout._core.atomic import write_json_atomic, write_text_atomic
from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout._core.locks import FileLock
from heldout._core.provenance import provenance_for
from heldout._core.write_safety import ensure_dir
from heldout.cluster import SCHEDULER_LOCAL, SCHEDULER_NONE, check_scheduler
from heldout.errors import InputFileError, StaleResultError, UsageError
from heldout.evaluation import run_outputs
from heldout.evaluation.options import EvalOptions
from heldout.evaluation.records import (
    RECORD_VERSION,
    STATUS_OK,
    EvaluationSummary,
    RunRecord,
    base_fields,
    error_record,
    experiment_identity,
    read_record,
    record_path,
    run_identity,
    split_record,
)
from heldout.release import layout as release

DEFAULT_WORKERS = 2
MANIFEST_FILE = "evaluation.json"  # in the output folder: whose records these are
LOCK_FILE = ".evaluation.lock"
_MANIFEST_FORMAT = "heldout evaluation records"


# ---------------------------------------------------------------------- choosing the runs


def select_runs(
    experiment_dir: str | os.PathLike,
    subset_ratio: float | None = None,
    max_runs: int | None = None,
) -> list[release.Run]:
    """The experiment's runs that have a checkpoint, by (subset ratio, run id).

    Args:
      experiment_dir: the experiment folder.
      subset_ratio: keep only this ratio.
      max_runs: keep the first that many (after the ratio filter), so repeated calls pick
        the same runs and resume them.

    Returns:
      The runs, in (subset ratio, run id) order.

    Raises:
      UsageError: `max_runs` below 1.
      ReleaseLayoutError: no run with a checkpoint (at that ratio).
    """
    if max_runs is not None and max_runs < 1:
        raise UsageError(f"max_runs must be at least 1, got {max_runs}")
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


# ------------------------------------------------------------------ one run, in a worker


class WorkerState:
    """What one worker keeps from run to run: the data source it opened and its models.

    One per thread that evaluates (a model is overwritten by each restore, so two
    concurrent evaluations must not share one). The source is kept for one experiment at
    a time: in-memory sources (CIFAR, `.npz`) hold a whole dataset.
    """

    def __init__(self):
        from heldout.evaluation import (
            evaluate as evaluation,  # TensorFlow: only where runs are evaluated
        )

        self.models = evaluation.ModelCache()
        self._source_key: tuple | None = None
        self._source = None

    def source(self, experiment_dir: str | os.PathLike, options: EvalOptions, labels: Any):
        """The data the runs were trained and scored on (corrupted labels where recorded).

        `labels`: the label-corruption file's identity; a changed file is read again.
        """
        key = (str(experiment_dir), options.dataset, options.data_dir, json.dumps(labels))
        if key != self._source_key:
            from heldout.datasets import relabeled  # TensorFlow: only where a run is evaluated

            self._source = relabeled.experiment_source(
                experiment_dir, options.dataset, options.data_dir
            )
            self._source_key = key
        return self._source


_thread_states = threading.local()


def _this_threads_state() -> WorkerState:
    """The `WorkerState` of the calling thread (Dask workers call tasks in their threads)."""
    state = getattr(_thread_states, "state", None)
    if state is None:
        state = _thread_states.state = WorkerState()
    return state


def evaluate_run(
    run: release.Run, options: EvalOptions, state: WorkerState | None = None
) -> RunRecord:
    """Restores, evaluates and cross-checks one run; a failure becomes an error record.

    This is the task each worker runs. It never raises for a bad run, so one truncated
    checkpoint among thousands costs one record, not the job.

    Args:
      run: the run.
      options: how to evaluate it.
      state: the worker's data source and models; None: this thread's own.

    Returns:
      The record, with the identity of the inputs it was computed from (taken before
      they are read).
    """
    start = time.perf_counter()
    identity = None
    try:
        options = options.resolved()
        experiment = experiment_identity(run.experiment_dir, options)
        identity = run_identity(run, experiment)
        state = state if state is not None else _this_threads_state()
        source = state.source(run.experiment_dir, options, experiment["labels"])
        meta = release.read_experiment_meta(Path(run.experiment_dir))
        check = options.check_run(run, source, meta, cache=state.models)
        if options.outputs:  # only a run matching N out of N gets a file
            run_outputs.write_run_outputs(run, check, options)
    except Exception as error:  # noqa: BLE001 - recorded (bugs with their traceback)
        return error_record(run, error, time.perf_counter() - start, identity)
    return RunRecord(
        **base_fields(run),
        status=STATUS_OK,
        checkpoint=str(check.restore.path),
        epoch=int(check.restore.epoch),
        global_step=int(check.restore.global_step),
        arch=check.arch,
        num_classes=int(check.num_classes),
        splits={name: split_record(c) for name, c in check.checks.items()},
        matches=int(check.matches),
        total=int(check.total),
        elapsed_s=round(time.perf_counter() - start, 3),
        identity=identity,
    )


# ------------------------------------------------------------------- the output folder


def _claim_output_dir(output_dir: Path, experiment_dir: Path) -> None:
    """Makes `output_dir` the record folder of `experiment_dir`, or refuses.

    `evaluation.json` names the experiment; a folder written before it existed is
    claimed only if none of its records belongs to another experiment.

    Raises:
      StaleResultError: the folder holds another experiment's records.
    """
    manifest = output_dir / MANIFEST_FILE
    owner: str | None = None
    if manifest.exists():
        try:
            raw = json.loads(manifest.read_text())
            owner = raw["experiment_dir"] if raw.get("format") == _MANIFEST_FORMAT else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            owner = None
        if owner is None:
            raise InputFileError(
                f"{manifest}: not an evaluation-records manifest; this folder was not "
                "written by evaluate_runs: choose another output folder"
            )
    else:
        for path in sorted(output_dir.glob("*/*.json")):
            record = read_record(path)
            if record is not None and not _same_dir(record.experiment_dir, experiment_dir):
                owner = record.experiment_dir
                break
    if owner is not None and not _same_dir(owner, experiment_dir):
        raise StaleResultError(
            f"{output_dir}: holds the evaluation records of experiment {owner}, not of "
            f"{experiment_dir}; records of two experiments are never mixed in one folder: "
            "choose another output folder"
        )
    if owner is None:
        # A reader takes `format` and `experiment_dir` only: the version key is harmless.
        write_json_atomic(
            manifest,
            provenance_for(
                format=_MANIFEST_FORMAT,
                version=RECORD_VERSION,
                experiment_dir=str(experiment_dir),
            ),
        )


def _same_dir(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return Path(a).resolve() == Path(b).resolve()


# ------------------------------------------------------------------------- fanning out


Progress = Callable[[RunRecord, bool], None]  # (record, reused from an earlier call)


def _run_distributed(
    scheduler: str,
    n_workers: int,
    memory_limit,
    pending: Sequence[release.Run],
    options: EvalOptions,
    finish: Callable[[release.Run, RunRecord], None],
) -> None:
    from distributed import as_completed

    with cluster.connect(scheduler, n_workers, memory_limit) as client:
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


def evaluate_runs(
    runs: Iterable[release.Run],
    output_dir: str | os.PathLike,
    options: EvalOptions | None = None,
    scheduler: str = SCHEDULER_LOCAL,
    n_workers: int = DEFAULT_WORKERS,
    retry_errors: bool = False,
    progress: Progress | None = None,
    memory_limit: str | float | None = None,
) -> EvaluationSummary:
    """Evaluates every run without a current record in `output_dir`; records each result.

    Args:
      runs: the runs to check, all of one experiment (see `select_runs`).
      output_dir: where the per-run JSON records go (created if missing); it belongs to
        one experiment.
      options: data, splits, batch size and model overrides for every run.
      scheduler: "local" (a LocalCluster of `n_workers` processes), "none" (this process,
        sequentially) or the address of a running Dask scheduler.
      n_workers: worker processes of the local cluster; each evaluates one run at a time.
      retry_errors: evaluate runs with an error record again (default: keep the record, so
        a hopeless checkpoint is not retried on every call, unless its files changed).
      progress: called with (record, reused) once per run, as each finishes.
      memory_limit: per-worker memory limit of the local cluster (Dask's default: the
        machine's memory split between the workers).

    Returns:
      The records of all `runs` and what this call did (`evaluated`, `stale`, `skipped`).

    Raises:
      UsageError: bad options or scheduler; runs of more than one experiment.
      StaleResultError: `output_dir` holds another experiment's records.
      LockBusyError: another process is writing records into `output_dir`.
    """
    check_scheduler(scheduler)
    if n_workers < 1:
        raise UsageError(f"n_workers must be at least 1, got {n_workers}")
    options = (options or EvalOptions()).resolved()
    output_dir = Path(output_dir).absolute()
    runs = list(runs)
    experiments = {Path(run.experiment_dir).resolve() for run in runs}
    if len(experiments) > 1:
        raise UsageError(
            f"runs of {len(experiments)} experiments given; an output folder holds the "
            "records of one experiment: evaluate each into its own folder"
        )
    if not runs:
        return EvaluationSummary(output_dir, (), evaluated=0, skipped=0)
    (experiment_dir,) = experiments
    if options.outputs:  # never into the downloaded tree
        refuse_output_over_inputs([options.outputs_dir], input_dirs=[experiment_dir])
    ensure_dir(output_dir)
    with FileLock(output_dir / LOCK_FILE, f"writing evaluation records into {output_dir}"):
        _claim_output_dir(output_dir, experiment_dir)
        experiment = experiment_identity(experiment_dir, options)

        records: dict[Path, RunRecord] = {}
        pending: list[release.Run] = []
        stale = 0
        for run in runs:
            found = read_record(record_path(output_dir, run))
            if found is not None and not _same_dir(found.experiment_dir, experiment_dir):
                raise StaleResultError(
                    f"{record_path(output_dir, run)}: a record of experiment "
                    f"{found.experiment_dir}, not of {experiment_dir}; choose another "
                    "output folder"
                )
            current = found is not None and found.identity == run_identity(run, experiment)
            if current and found.ok and found.all_match and options.outputs:
                current = run_outputs.outputs_current(run, options)  # a file removed since
            if current and (found.ok or not retry_errors):
                records[run.path] = found
                if progress is not None:
                    progress(found, True)
            else:
                stale += found is not None and not current
                pending.append(run)

        def finish(run: release.Run, record: RunRecord) -> None:
            if record.identity is None:  # the worker died, or failed before taking it
                record = dataclasses.replace(record, identity=run_identity(run, experiment))
            write_text_atomic(record_path(output_dir, run), record.to_json())
            records[run.path] = record
            if progress is not None:
                progress(record, False)

        if pending and scheduler == SCHEDULER_NONE:
            state = WorkerState()
            for run in pending:
                finish(run, evaluate_run(run, options, state))
        elif pending:
            _run_distributed(scheduler, n_workers, memory_limit, pending, options, finish)

    return EvaluationSummary(
        output_dir=output_dir,
        records=tuple(records[run.path] for run in runs if run.path in records),
        evaluated=len(pending),
        skipped=len(runs) - len(pending),
        stale=stale,
    )


def evaluate_experiment(
    experiment_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    subset_ratio: float | None = None,
    max_runs: int | None = None,
    **kwargs,
) -> EvaluationSummary:
    """`select_runs` then `evaluate_runs` (keyword arguments go to `evaluate_runs`)."""
    return evaluate_runs(select_runs(experiment_dir, subset_ratio, max_runs), output_dir, **kwargs)
