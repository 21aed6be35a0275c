"""The experiment's record (`experiment.json`, `label_corruption.npz`): checked, merged, written.

Several trainers may write into one experiment folder at once (one per subset ratio is
the obvious split). Each reads, checks and rewrites the record under a short exclusive
lock (`record_lock`), merging what the others recorded (their subset ratios, their run
counts), so no process loses another's entries and a resume with other defining
settings is refused against the record as it is now, not as it was when it started.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heldout._core.locks import FileLock
from heldout._core.provenance import provenance_for
from heldout.errors import ExperimentMetaError, TrainingError
from heldout.release import label_corruption
from heldout.release import layout as release
from heldout.training.config import LEGACY_DEFINING_VALUES, TrainingConfig
from heldout.training.data import (
    SOURCE_META_KEY,
    OpenedSource,
    SourceRecord,
    TrainingData,
    load_training_data,
    source_record,
)
from heldout.training.plan import corruption_rng

TRAINING_META_KEY = "training"  # ExperimentMeta.extra key holding the hyperparameters
RECORD_LOCK_FILE = ".experiment.json.lock"
RECORD_LOCK_TIMEOUT_S = 60.0  # others hold it for a read and a small write


def record_lock(experiment_dir: Path) -> FileLock:
    """The exclusive lock under which the record is read, checked and rewritten."""
    return FileLock(
        experiment_dir / RECORD_LOCK_FILE,
        f"updating {experiment_dir / release.EXPERIMENT_META_FILE}",
        timeout_s=RECORD_LOCK_TIMEOUT_S,
    )


def check_existing(
    experiment_dir: Path,
    config: TrainingConfig,
    source_name: str,
    source: SourceRecord | None = None,
) -> release.ExperimentMeta | None:
    """The recorded meta if `experiment_dir` holds this experiment; None if it holds none.

    `source`: the data now read; compared with the recorded `SourceRecord` (when the
    record has one: experiments trained before it was recorded are not refused for it).

    Raises:
      TrainingError: the folder holds another experiment (not ours, or other defining
        settings, or another data source or other data); the message lists the
        differences.
    """
    meta_path = experiment_dir / release.EXPERIMENT_META_FILE
    if not meta_path.is_file():
        return None
    meta = release.read_experiment_meta(experiment_dir)
    recorded = meta.extra.get(TRAINING_META_KEY)
    if not isinstance(recorded, dict):
        raise TrainingError(
            f"{experiment_dir}: holds an experiment not written by this trainer "
            f"({release.EXPERIMENT_META_FILE} has no {TRAINING_META_KEY!r} record); choose "
            "another output folder"
        )
    differ = [
        f"{key}: recorded {_recorded_value(recorded, key)!r}, asked {value!r}"
        for key, value in config.defining().items()
        if _recorded_value(recorded, key) != value
    ]
    if meta.dataset != source_name:
        differ.append(f"data source: recorded {meta.dataset!r}, asked {source_name!r}")
    recorded_source = meta.extra.get(SOURCE_META_KEY)
    if source is not None and isinstance(recorded_source, dict):
        differ.extend(source.differences(recorded_source))
    if differ:
        raise TrainingError(
            f"{experiment_dir}: already holds runs trained with other settings; resuming "
            "would mix two experiments. Differences: " + "; ".join(differ)
        )
    return meta


def _recorded_value(recorded: dict, key: str):
    """A recorded defining value; for a field the record predates, the value it implied."""
    return recorded.get(key, LEGACY_DEFINING_VALUES.get(key))


def prepare_corruption(
    experiment_dir: Path, config: TrainingConfig, clean_labels: np.ndarray, num_classes: int
) -> label_corruption.LabelCorruption | None:
    """The experiment's label corruption, created and recorded the first time.

    Deterministic in (seed, prob, labels): recomputed and compared with the record, so
    that a record left by an interrupted call with other settings (before the meta file
    existed) is caught. Call it under `record_lock`.

    Raises:
      TrainingError: the recorded corruption belongs to other settings.
    """
    if config.label_corrupt_prob == 0:
        return None
    path = experiment_dir / label_corruption.LABEL_CORRUPTION_FILE
    corruption = label_corruption.corrupt_labels(
        clean_labels, config.label_corrupt_prob, num_classes, corruption_rng(config.seed)
    )
    if path.is_file():
        recorded = label_corruption.load_label_corruption(path)
        same = all(
            np.array_equal(getattr(recorded, key), getattr(corruption, key))
            for key in ("indices", "original_labels", "new_labels")
        )
        if not same:
            raise TrainingError(
                f"{path}: records a label corruption ({recorded.num_corrupted} labels) other "
                f"than label_corrupt_prob={config.label_corrupt_prob} with seed="
                f"{config.seed} gives ({corruption.num_corrupted} labels); it belongs to "
                "another experiment: choose another output folder"
            )
        return recorded
    label_corruption.save_label_corruption(path, corruption)
    return corruption


def experiment_meta(
    experiment_dir: Path,
    config: TrainingConfig,
    data: TrainingData,
    previous: release.ExperimentMeta | None,
) -> release.ExperimentMeta:
    """The record of `config` merged with `previous` (the ratios and runs others trained).

    Paths are absolute (`data.data_dir`): later tools may run from anywhere.
    """
    ratios = set(config.subset_ratios)
    runs = config.runs_per_ratio
    if previous is not None:
        recorded_ratios, recorded_runs = _recorded_runs(experiment_dir, previous)
        ratios |= recorded_ratios
        runs = max(runs, recorded_runs)
    corruption_file = (
        label_corruption.LABEL_CORRUPTION_FILE if data.corruption is not None else None
    )
    return release.ExperimentMeta(
        name=experiment_dir.absolute().name,
        arch=config.model_arch,
        num_classes=data.num_classes,
        dataset=data.source_name,
        index_order=data.index_order,
        image_shape=tuple(int(d) for d in data.train_images.shape[1:]),
        num_train=data.num_train,
        num_test=data.num_test,
        # The one provenance builder (adds `heldout_version`); a resume compares the
        # training and source records only (`check_existing`), so the key is harmless.
        extra=provenance_for(
            data_dir=data.data_dir,
            seed=config.seed,
            subset_ratios=sorted(ratios),
            runs_per_ratio=runs,
            label_corrupt_prob=config.label_corrupt_prob,
            **{
                label_corruption.META_KEY: corruption_file,
                TRAINING_META_KEY: config.defining(),
                SOURCE_META_KEY: data.record.as_json() if data.record is not None else None,
            },
            trainer="heldout.training",
        ),
    )


def _recorded_runs(experiment_dir: Path, meta: release.ExperimentMeta) -> tuple[set[float], int]:
    """The subset ratios and run count recorded by earlier (or concurrent) trainers."""
    ratios = meta.extra.get("subset_ratios", [])
    runs = meta.extra.get("runs_per_ratio", 0)
    numbers = isinstance(ratios, list) and all(
        isinstance(r, (int, float)) and not isinstance(r, bool) for r in ratios
    )
    if not numbers or not isinstance(runs, int) or isinstance(runs, bool):
        raise ExperimentMetaError(
            f"{experiment_dir / release.EXPERIMENT_META_FILE}: 'subset_ratios' must be a list "
            f"of numbers and 'runs_per_ratio' an integer, got {ratios!r} and {runs!r}"
        )
    return {float(r) for r in ratios}, runs


def update_record(
    experiment_dir: Path, config: TrainingConfig, opened: OpenedSource
) -> TrainingData:
    """Checks and (re)writes the record under `record_lock`; returns the training data.

    Raises:
      TrainingError: the folder holds another experiment (see `check_existing`).
      LockBusyError: another process kept the record lock for over a minute.
    """
    # Loaded before taking the lock (the source keeps them): reading is the slow part.
    clean = opened.source.load_arrays("train")
    opened.source.load_arrays("test")
    recorded_source = source_record(opened)
    with record_lock(experiment_dir):
        previous = check_existing(experiment_dir, config, opened.name, recorded_source)
        corruption = prepare_corruption(
            experiment_dir, config, clean.labels, opened.source.num_classes
        )
        data = load_training_data(config, corruption, opened, recorded_source)
        release.write_experiment_meta(
            experiment_dir, experiment_meta(experiment_dir, config, data, previous)
        )
    return data
