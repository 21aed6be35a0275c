"""Find and describe experiments, subset ratios and runs; write runs in the same layout.

Layout (the release's, and what our trainer writes):
`<experiment>/<subset_ratio>/<run_id>/{aux_arrays.npz, checkpoints/ckpt-<N>.*}`.
A run with only `aux_arrays.npz` is complete for scoring: many users download only those.
Anything else in the tree (READMEs, score files, hidden temporary folders) is ignored.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from heldout._core.atomic import commit_dir, make_temp_dir, write_text_atomic
from heldout._core.bounded_json import load_json_file
from heldout._core.write_safety import ensure_dir
from heldout.errors import ExperimentMetaError, ReleaseLayoutError, UsageError
from heldout.release import registry
from heldout.release.aux_arrays import AuxArrays, load_aux_arrays, save_aux_arrays
from heldout.release.run_folders import (
    AUX_ARRAYS_FILE,
    find_run_folders,
    parse_ratio,
    parse_run_id,
    ratio_dirs,
    ratio_key,  # noqa: F401 - re-exported: callers compare ratios by it
)

CHECKPOINTS_DIR = "checkpoints"
EXPERIMENT_META_FILE = "experiment.json"
DEFAULT_EXPERIMENT_NAME = "fashion_mnist-mlp"


@dataclasses.dataclass(frozen=True)
class ExperimentMeta:
    """What an experiment's runs were trained on; `None` where nothing says."""

    name: str
    arch: str | None = None
    num_classes: int | None = None
    dataset: str | None = None
    index_order: str | None = None
    image_shape: tuple[int, int, int] | None = None
    # Split sizes every run must have (the registry's for released experiments, recorded
    # by our trainer otherwise): a run that disagrees is the bad one, whatever its order.
    num_train: int | None = None
    num_test: int | None = None
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Run:
    """One trained model: its aux arrays and, when downloaded, its checkpoint folder."""

    experiment_dir: Path
    subset_ratio: float
    ratio_dir_name: str
    run_id: int
    path: Path

    @property
    def aux_path(self) -> Path:
        return self.path / AUX_ARRAYS_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint_dir.is_dir() and any(self.checkpoint_dir.glob("ckpt-*.index"))

    def load_aux(self) -> AuxArrays:
        return load_aux_arrays(self.aux_path)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """All runs under one experiment folder, sorted by (subset ratio, run id)."""

    path: Path
    meta: ExperimentMeta
    runs: tuple[Run, ...]

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def subset_ratios(self) -> tuple[float, ...]:
        return tuple(sorted({run.subset_ratio for run in self.runs}))

    def runs_at(self, subset_ratio: float) -> list[Run]:
        return [run for run in self.runs if _same_ratio(run.subset_ratio, subset_ratio)]

    def __repr__(self) -> str:
        """One line however many runs: path, dataset, and the runs at each ratio."""
        counts: dict[float, int] = {}
        for run in self.runs:
            counts[run.subset_ratio] = counts.get(run.subset_ratio, 0) + 1
        ratios = ", ".join(
            f"{ratio!r}: {n} run{'' if n == 1 else 's'}" for ratio, n in sorted(counts.items())
        )
        return f"Experiment({str(self.path)!r}, dataset={self.meta.dataset!r}, ratios=[{ratios}])"

    def run(self, subset_ratio: float, run_id: int) -> Run:
        for run in self.runs_at(subset_ratio):
            if run.run_id == run_id:
                return run
        raise ReleaseLayoutError(
            f"{self.path}: no run {run_id} at subset ratio {subset_ratio} "
            f"(ratios present: {list(self.subset_ratios)})"
        )


def _same_ratio(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


class _NoRunsError(ReleaseLayoutError):
    """A folder with ratio-like folders but no run: not an experiment, for the finder."""


def ratio_dir_name(subset_ratio: float) -> str:
    """0.7 -> '0.7': the shortest decimal that reads back as the same float."""
    if not 0.0 < subset_ratio <= 1.0:
        raise UsageError(f"subset ratio must be in (0, 1], got {subset_ratio}")
    return repr(float(subset_ratio))


_META_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "arch": (str,),
    "num_classes": (int,),
    "dataset": (str,),
    "index_order": (str,),
    "image_shape": (list, tuple),
    "num_train": (int,),
    "num_test": (int,),
    "extra": (dict,),
}


def _meta_fields(raw: object, meta_path: Path) -> dict:
    """Checks the decoded `experiment.json` and returns ExperimentMeta's keyword arguments."""
    if not isinstance(raw, dict):
        raise ExperimentMetaError(
            f"{meta_path}: expected a JSON object at the top level, got {type(raw).__name__}"
        )
    fields = {}
    for key, types in _META_TYPES.items():
        value = raw.get(key)
        if value is None:
            continue
        # bool is an int in Python; a class count of `true` is still a mistake.
        if not isinstance(value, types) or isinstance(value, bool):
            wanted = " or ".join(t.__name__ for t in types)
            raise ExperimentMetaError(
                f"{meta_path}: {key!r} must be {wanted} (or null), got "
                f"{type(value).__name__} {value!r}"
            )
        fields[key] = value
    shape = fields.get("image_shape")
    if shape is not None:
        if len(shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
        ):
            raise ExperimentMetaError(
                f"{meta_path}: 'image_shape' must be three positive integers [H, W, C], "
                f"got {shape!r}"
            )
        fields["image_shape"] = tuple(shape)
    for key in ("num_classes", "num_train", "num_test"):
        if key in fields and fields[key] < 1:
            raise ExperimentMetaError(f"{meta_path}: {key!r} must be positive, got {fields[key]}")
    return fields


def read_experiment_meta(experiment_dir: Path) -> ExperimentMeta:
    """Meta from `experiment.json` when present, else from the registry by folder name.

    Raises:
      ExperimentMetaError: the file is not valid JSON (or too large or deeply nested),
        not an object, or a field has the wrong type (the message names the file and
        the field).
    """
    experiment_dir = Path(experiment_dir)
    meta_path = experiment_dir / EXPERIMENT_META_FILE
    if meta_path.exists() and not meta_path.is_dir():  # a FIFO or device: refused, named
        # Bounded: a huge number or deep nesting is one error, not a traceback.
        raw = load_json_file(meta_path, ExperimentMetaError)
        fields = _meta_fields(raw, meta_path)
        fields.setdefault("name", experiment_dir.name)
        known = set(_META_TYPES)
        # Unknown top-level keys are kept too, so hand-written files lose nothing.
        extra = {key: value for key, value in raw.items() if key not in known}
        extra.update(fields.pop("extra", {}))
        return ExperimentMeta(**fields, extra=extra)
    spec = registry.EXPERIMENTS.get(experiment_dir.name)
    if spec is None:
        return ExperimentMeta(name=experiment_dir.name)
    return ExperimentMeta(
        name=spec.name,
        arch=spec.arch,
        num_classes=spec.num_classes,
        dataset=spec.dataset,
        index_order=spec.index_order,
        image_shape=spec.image_shape,
        num_train=spec.num_train,
        num_test=spec.num_test,
    )


def write_experiment_meta(experiment_dir: str | os.PathLike, meta: ExperimentMeta) -> None:
    """Records what an experiment was trained on, so later tools load the same data order."""
    experiment_dir = Path(experiment_dir)
    ensure_dir(experiment_dir)
    raw = dataclasses.asdict(meta)
    write_text_atomic(experiment_dir / EXPERIMENT_META_FILE, json.dumps(raw, indent=2) + "\n")


def open_experiment(path: str | os.PathLike) -> Experiment:
    """Reads one experiment folder: its meta and every run, sorted by (ratio, run id).

    Args:
      path: the experiment folder (`<experiment>/<subset_ratio>/<run_id>/...`).

    Returns:
      The experiment.

    Raises:
      ReleaseLayoutError: not a folder, no run below it, or two folders that denote one
        ratio, one run id or (through links) one run (`find_run_folders`).
      ExperimentMetaError: a malformed `experiment.json`.
    """
    path = Path(path)
    if not path.is_dir():
        raise ReleaseLayoutError(f"{path}: not a folder")
    runs = [Run(path, *found) for found in find_run_folders(path)]
    if not runs:
        raise _NoRunsError(
            f"{path}: no runs found; expected <subset_ratio>/<run_id>/{AUX_ARRAYS_FILE} "
            "below it (e.g. 0.7/0/aux_arrays.npz)"
        )
    return Experiment(path=path, meta=read_experiment_meta(path), runs=tuple(runs))


def find_experiments(root: str | os.PathLike) -> list[Experiment]:
    """The root itself if it is an experiment, else every experiment folder below it.

    Args:
      root: an experiment folder, or a folder holding experiments (a download's output).

    Returns:
      The experiments found, sorted by folder name; folders that only look like one (a
      ratio-like folder with no runs) are left out.

    Raises:
      ReleaseLayoutError: `root` is not a folder, or it or a folder below it is an
        experiment that cannot be read (e.g. a run counted twice).
    """
    root = Path(root)
    if not root.is_dir():
        raise ReleaseLayoutError(f"{root}: not a folder")
    if ratio_dirs(root):
        return [open_experiment(root)]
    experiments = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith(".") and ratio_dirs(child):
            try:
                experiments.append(open_experiment(child))
            except _NoRunsError:
                continue  # a ratio-like folder with no runs: not an experiment
    return experiments


def open_run(path: str | os.PathLike) -> Run:
    """One run of a release, opened from its own folder.

    Args:
      path: a run folder `<experiment>/<ratio>/<run_id>`, or its `checkpoints/` folder.

    Returns:
      The `Run`, its experiment being the folder two levels up.

    Raises:
      ReleaseLayoutError: the folder names are not a ratio and a run id, or the run has no
        `aux_arrays.npz`.
    """
    path = Path(path)
    if path.name == CHECKPOINTS_DIR:
        path = path.parent
    path = path.resolve()
    run_id = parse_run_id(path.name)
    ratio = parse_ratio(path.parent.name)
    if run_id is None or ratio is None:
        raise ReleaseLayoutError(
            f"{path}: not a run folder; expected <experiment>/<subset_ratio>/<run_id>"
        )
    if not (path.is_dir() and (path / AUX_ARRAYS_FILE).is_file()):
        raise ReleaseLayoutError(f"{path}: run folder without {AUX_ARRAYS_FILE}")
    return Run(path.parent.parent, ratio, path.parent.name, run_id, path)


def write_run(
    experiment_dir: str | os.PathLike,
    subset_ratio: float,
    run_id: int,
    aux: AuxArrays,
    write_checkpoint: Callable[[Path], None] | None = None,
) -> Run:
    """Writes a complete run folder or nothing: built under a hidden name, then renamed.

    Args:
      experiment_dir: the experiment folder (created when missing).
      subset_ratio: the run's ratio, in (0, 1]; its folder is `ratio_dir_name(ratio)`.
      run_id: the run's folder name below the ratio folder.
      aux: the run's aux arrays, written as `aux_arrays.npz`.
      write_checkpoint: called with the temporary `checkpoints/` folder to fill; None
        writes a run without checkpoint (complete for scoring).

    Returns:
      The written run.

    Raises:
      FileExistsError: the run folder exists already; it is never replaced.
      UsageError: a subset ratio outside (0, 1].
      Whatever `write_checkpoint` raises; nothing is left behind then.
    """
    experiment_dir = Path(experiment_dir)
    ratio_dir = experiment_dir / ratio_dir_name(subset_ratio)
    ensure_dir(ratio_dir)
    final = ratio_dir / str(run_id)
    if final.exists():
        raise FileExistsError(f"{final}: run folder already exists; not replacing it")
    tmp_dir = make_temp_dir(ratio_dir, prefix=f".{run_id}.")
    try:
        save_aux_arrays(tmp_dir / AUX_ARRAYS_FILE, aux)
        if write_checkpoint is not None:
            checkpoint_dir = tmp_dir / CHECKPOINTS_DIR
            checkpoint_dir.mkdir()
            write_checkpoint(checkpoint_dir)
        commit_dir(tmp_dir, final)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return Run(experiment_dir, float(subset_ratio), ratio_dir.name, run_id, final)


def default_experiment_dir() -> Path:
    """Where the embedded Fashion-MNIST experiment is built and cached.

    `$HELDOUT_HOME` (default `~/.cache/heldout`) / `experiments/fashion_mnist-mlp`.
    """
    home = os.environ.get("HELDOUT_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache", "heldout"
    )
    return Path(home) / "experiments" / DEFAULT_EXPERIMENT_NAME
