"""Run records of a re-evaluation: what one run's cross-check found, and what it is of.

A record is JSON at `<output_dir>/<ratio>/<run_id>.json`; its `identity` (experiment and
run folders, checkpoint and aux-array files, labels, data, options) decides on resume
whether it is reused (equal identity) or the run is evaluated afresh.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

from heldout._core.provenance import file_identity, provenance_for
from heldout.errors import InputFileError, describe_error
from heldout.evaluation.options import EvalOptions, absolute_path
from heldout.release import label_corruption
from heldout.release import layout as release

MAX_MISMATCHES_RECORDED = 20  # first mismatching indices kept per split in a record
RECORD_VERSION = 2  # 2: records carry their identity
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
        """The record as written: its fields, the record version and the toolkit's.

        Through the one provenance builder; a resume compares `identity` only, and
        `from_json` drops the two version keys, so records of earlier versions still read.
        """
        raw = provenance_for(**dataclasses.asdict(self))
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
            raw.pop("heldout_version", None)
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
    data_dir = options.data_dir or absolute_path(extra.get("data_dir"))
    data_file = None
    if data_dir is not None and Path(data_dir).is_file():
        data_file = file_identity(data_dir)
    corruption_name = extra.get(label_corruption.META_KEY)
    labels = _file_or_missing(folder / corruption_name) if corruption_name else None
    image_shape = list(meta.image_shape) if meta.image_shape else None
    identity = {
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
    if options.outputs:  # only then: records written without outputs stay current
        identity["options"]["outputs"] = list(options.outputs)
        identity["options"]["outputs_dir"] = options.outputs_dir
    return identity


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


def split_record(check) -> SplitRecord:
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


def base_fields(run: release.Run) -> dict:
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
    message, trace = describe_error(error)
    return RunRecord(
        **base_fields(run),
        status=STATUS_ERROR,
        error=message,
        traceback=trace,
        elapsed_s=round(elapsed_s, 3),
        identity=identity,
    )
