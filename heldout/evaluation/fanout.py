"""Re-evaluate and cross-check many runs of an experiment, fanned out over Dask.

    runs = select_runs(experiment_dir, subset_ratio=0.7, max_runs=500)
    summary = evaluate_runs(runs, output_dir, scheduler="local", n_workers=4)

One task per run: the worker restores the checkpoint, evaluates and cross-checks it
(`heldout.evaluation.evaluate.check_run`), and sends back a small `RunRecord`. The client writes
each record as JSON to `<output_dir>/<ratio>/<run_id>.json` (atomically, with the umask's
modes) as soon as it arrives, so an interrupted job RESUMES.

What a record is a result of is stored in it (`RunRecord.identity`): the experiment and
run folders, the size and mtime of the checkpoint files and of `aux_arrays.npz`, the
labels (the label-corruption file, when the experiment has one), the data source and
folder, and the evaluation options (splits, batch size, model overrides). On resume, a
record is reused only when its identity equals the one computed now; a record of the
same run whose identity differs (another `--split`, a replaced checkpoint, another data
folder) is evaluated afresh, overwrites the old record and is counted in
`EvaluationSummary.stale`. An output folder belongs to one experiment (`evaluation.json`
in it says which): pointing a call for another experiment at it is refused with
`StaleResultError`, since overwriting would leave the records of two experiments mixed.
A lock file keeps two calls from writing into one folder at once.

A run that fails (truncated checkpoint, wrong architecture, a worker that died) gets an
error record instead and does not stop the others; `retry_errors=True` evaluates such
runs again (an error record whose inputs changed is retried anyway: it is stale).

Each worker keeps a `WorkerState`: the data source it opened (once, not once per run; no
dataset is pickled) and a `ModelCache`, so the model is built and its evaluation step
traced once per architecture, and each run only restores its weights. TensorFlow is
imported only inside the workers (or, with `scheduler="none"`, on the first run in this
process): a client that only schedules stays light.

Schedulers (started by `heldout.cluster`, as for training and scores): "local" starts a
`distributed.LocalCluster` of `n_workers` processes with one thread each (TensorFlow
parallelizes inside a process; the cores are split evenly between the workers through
TF_NUM_INTRAOP_THREADS); an address ("tcp://host:8786") joins an
existing cluster whose workers can import `heldout` and read the experiment; "none"
evaluates in this process, one run after another (tests, laptops, debugging).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from heldout import cluster
from heldout._core.atomic import write_json_atomic, write_text_atomic
from heldout._core.locks import FileLock
from heldout._core.provenance import file_identity
from heldout.cluster import SCHEDULER_LOCAL, SCHEDULER_NONE, check_scheduler
from heldout.errors import HeldoutError, InputFileError, StaleResultError, UsageError
from heldout.release import label_corruption
from heldout.release import layout as release

DEFAULT_WORKERS = 2
MAX_MISMATCHES_RECORDED = 20  # first mismatching indices kept per split in a record
RECORD_VERSION = 2  # 2: records carry their identity
STATUS_OK = "ok"
STATUS_ERROR = "error"
MANIFEST_FILE = "evaluation.json"  # in the output folder: whose records these are
LOCK_FILE = ".evaluation.lock"
_MANIFEST_FORMAT = "heldout evaluation records"
_SPLITS = ("train", "test")


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
    not cover). For an error record, `error` holds the message and the numbers are empty;
    `traceback` is set when the error was not one the toolkit raises on purpose (a bug).
    `identity` is what the record is a result of (see `run_identity`); None in records
    written before identities were recorded, which are therefore never reused.
    """

    run_path: str
    experiment_dir: str
    subset_ratio: float
    ratio_dir_name: str
    run_id: int
    status: str
    error: str | None = None
    traceback: str | None = None
    checkpoint: str | None = None
    epoch: int | None = None
    global_step: int | None = None
    arch: str | None = None
    num_classes: int | None = None
    splits: dict[str, SplitRecord] = dataclasses.field(default_factory=dict)
    matches: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    identity: dict | None = None

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
        """Parses `to_json` output (any version).

        Raises:
          InputFileError: `text` is not a run record; the message names `source`.
        """
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
            raise InputFileError(f"{source}: not a run record ({error})") from None
        if record.status not in (STATUS_OK, STATUS_ERROR):
            raise InputFileError(f"{source}: unknown status {record.status!r}")
        return record


@dataclasses.dataclass(frozen=True)
class EvaluationSummary:
    """The outcome over all selected runs: new records and those found from earlier calls.

    `evaluated`: runs evaluated by this call (errors included); `stale`: how many of
    those had a record whose identity no longer matched (re-evaluated, record replaced);
    `skipped`: runs whose earlier record was reused; `errors`: runs whose record (new or
    earlier) is an error. `matches` / `total` sum over the runs with an ok record.
    """

    output_dir: Path
    records: tuple[RunRecord, ...]
    evaluated: int
    skipped: int
    stale: int = 0

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
    """How each run is evaluated; small and picklable, shipped with every task.

    Attributes:
      dataset: data source name (`heldout.datasets.SOURCE_NAMES`); None: the experiment's.
      data_dir: its folder or file; None: the experiment's. Made absolute by `resolved`
        (workers may run elsewhere, and the record names it).
      splits: "train" and/or "test".
      batch_size: images per evaluation step.
      arch, num_classes: override the experiment's model.
    """

    dataset: str | None = None
    data_dir: str | None = None
    splits: tuple[str, ...] = _SPLITS
    batch_size: int = 500
    arch: str | None = None
    num_classes: int | None = None

    def resolved(self) -> EvalOptions:
        """These options checked, with an absolute `data_dir`.

        Raises:
          UsageError: unknown or no splits, a batch size below 1, a class count below 2.
        """
        splits = tuple(self.splits)
        if not splits or any(split not in _SPLITS for split in splits):
            raise UsageError(f"splits must be some of {list(_SPLITS)}, got {list(splits)}")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise UsageError(f"batch size must be a positive integer, got {self.batch_size}")
        if self.num_classes is not None and self.num_classes < 2:
            raise UsageError(f"number of classes must be at least 2, got {self.num_classes}")
        return dataclasses.replace(
            self,
            splits=splits,
            batch_size=int(self.batch_size),
            data_dir=_absolute(self.data_dir),
        )

    def check_run(self, run: release.Run, source, meta, cache=None):
        """`heldout.evaluation.evaluate.check_run` of `run` with these options.

        Args:
          run: the run.
          source: its data source (`heldout.datasets.relabeled.experiment_source`).
          meta: its experiment's `ExperimentMeta`.
          cache: an `evaluation.ModelCache` (None: a fresh model for this run).

        Returns:
          The `evaluation.RunCheck`.
        """
        from heldout.evaluation import evaluate as evaluation

        return evaluation.check_run(
            run,
            source,
            splits=self.splits,
            arch=self.arch,
            num_classes=self.num_classes,
            meta=meta,
            batch_size=self.batch_size,
            cache=cache,
        )


def _absolute(path: str | os.PathLike | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(os.fspath(path)))


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


def record_path(output_dir: str | os.PathLike, run: release.Run) -> Path:
    """`<output_dir>/<ratio folder name>/<run_id>.json`: the experiment's own layout."""
    return Path(output_dir) / run.ratio_dir_name / f"{run.run_id}.json"


def read_record(path: str | os.PathLike) -> RunRecord | None:
    """The record at `path`, or None when there is none or it cannot be read (then the
    run is evaluated again: records are written atomically, so this means outside damage)."""
    path = Path(path)
    try:
        return RunRecord.from_json(path.read_text(), str(path))
    except (OSError, InputFileError):
        return None


# ------------------------------------------------------------------- what a record is of


def _file_or_missing(path: Path) -> dict:
    """`heldout._core.provenance.file_identity`, or a marker when the file is not there (yet)."""
    try:
        return file_identity(path)
    except FileNotFoundError:
        return {"path": str(path.absolute()), "missing": True}


def experiment_identity(experiment_dir: str | os.PathLike, options: EvalOptions) -> dict:
    """The part of every run's identity that the experiment and the options decide.

    The data source and folder (the options' or the experiment's), the data file's size
    and mtime when the folder is a file (an `.npz`), the label-corruption file's, and
    the model the experiment records; computed once per call, not once per run.

    Raises:
      UsageError: bad options (see `EvalOptions.resolved`).
      ExperimentMetaError: an unreadable `experiment.json`.
    """
    from heldout.datasets import source_name_for

    options = options.resolved()
    folder = Path(experiment_dir).resolve()
    meta = release.read_experiment_meta(folder)
    extra = meta.extra or {}
    source = options.dataset or source_name_for(meta.dataset, meta.index_order)
    data_dir = options.data_dir or _absolute(extra.get("data_dir"))
    data_file = None
    if data_dir is not None and Path(data_dir).is_file():
        data_file = file_identity(data_dir)
    corruption_name = extra.get(label_corruption.META_KEY)
    labels = _file_or_missing(folder / corruption_name) if corruption_name else None
    image_shape = list(meta.image_shape) if meta.image_shape else None
    return {
        "experiment_dir": str(folder),
        "options": {
            "splits": list(options.splits),
            "batch_size": options.batch_size,
            "arch": options.arch,
            "num_classes": options.num_classes,
            "dataset": options.dataset,
            "data_dir": options.data_dir,
        },
        "data": {"source": source, "data_dir": data_dir, "file": data_file},
        "labels": labels,
        "model": {"arch": meta.arch, "num_classes": meta.num_classes, "image_shape": image_shape},
    }


def run_identity(run: release.Run, experiment: dict) -> dict:
    """What a record of `run` is a result of; equal identities mean the same inputs.

    Args:
      run: the run.
      experiment: `experiment_identity(run.experiment_dir, options)`.

    Returns:
      A JSON-able dict: `experiment` plus the run folder and the identities (absolute
      path, size, mtime) of its `aux_arrays.npz` and of every `ckpt-*` file.
    """
    path = Path(run.path).resolve()
    checkpoint_dir = path / release.CHECKPOINTS_DIR
    try:
        names = sorted(p.name for p in checkpoint_dir.iterdir() if p.name.startswith("ckpt-"))
    except OSError:
        names = []
    return {
        **experiment,
        "run_path": str(path),
        "aux_arrays": _file_or_missing(path / release.AUX_ARRAYS_FILE),
        "checkpoint_files": [_file_or_missing(checkpoint_dir / name) for name in names],
    }


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


def error_record(
    run: release.Run,
    error: BaseException,
    elapsed_s: float = 0.0,
    identity: dict | None = None,
) -> RunRecord:
    """An error record; errors that are not the toolkit's (bugs) keep their traceback."""
    message = str(error) or type(error).__name__
    trace = None
    if not isinstance(error, (HeldoutError, OSError)):
        message = f"{type(error).__name__}: {message}"
        trace = "".join(traceback.format_exception(error))
    return RunRecord(
        **_base_fields(run),
        status=STATUS_ERROR,
        error=message,
        traceback=trace,
        elapsed_s=round(elapsed_s, 3),
        identity=identity,
    )


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
    except Exception as error:  # noqa: BLE001 - recorded (bugs with their traceback)
        return error_record(run, error, time.perf_counter() - start, identity)
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
        write_json_atomic(
            manifest,
            {
                "format": _MANIFEST_FORMAT,
                "version": RECORD_VERSION,
                "experiment_dir": str(experiment_dir),
            },
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
    output_dir.mkdir(parents=True, exist_ok=True)
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
