"""The training data: which source a dataset name and data_dir name, loaded into memory.

Three kinds (`SourceRecord.kind`): `idx` (a folder of IDX files), `npz` (a `.npz` file)
and `tfds` (any TFDS image-classification dataset). The data_dir is made absolute and
what was read is recorded (files' identities, a digest of the arrays), so a resume on
other data is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np

from heldout._core.provenance import file_identity
from heldout.datasets import DataSource, OpenedSource, relabeled
from heldout.datasets import open_source as datasets_open_source
from heldout.datasets.idx import DEBIAN_FASHION_MNIST_DIR, IDX_FILES
from heldout.datasets.resolve import is_idx_folder
from heldout.errors import TrainingError
from heldout.release import label_corruption
from heldout.training.config import NPZ_DATASET, TrainingConfig

SOURCE_META_KEY = "source"  # ExperimentMeta.extra key of the `SourceRecord`
TRAINING_SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class SourceRecord:
    """What an experiment was trained on, recorded in `experiment.json` (`extra["source"]`).

    `sha256` digests each split's images and labels in index order (the clean labels),
    so two records are the same data in the same order exactly when they compare equal
    on (`kind`, `name`, `sha256`); `files` (path, size, mtime of what was read) says where
    it came from. The path may change (a moved folder) without making it other data.
    """

    kind: str
    name: str
    path: str
    index_order: str
    num_examples: dict[str, int]
    sha256: dict[str, str]
    files: tuple[dict, ...]

    def as_json(self) -> dict:
        return {**dataclasses.asdict(self), "files": list(self.files)}

    def differences(self, recorded: dict) -> list[str]:
        """What differs from a recorded `as_json()` in what decides the data (empty: same)."""
        return [
            f"data source {key}: recorded {recorded.get(key)!r}, now {getattr(self, key)!r}"
            for key in ("kind", "name", "num_examples", "sha256")
            if recorded.get(key) != getattr(self, key)
        ]


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The dataset in memory, in the experiment's index order.

    `train_labels` are the labels the models train on (corrupted where the experiment
    says so); `source` serves the same labels for evaluation.
    """

    source: DataSource
    source_name: str
    data_dir: str
    index_order: str
    num_classes: int
    train_images: np.ndarray  # uint8 [N, H, W, C]
    train_labels: np.ndarray  # int64 [N], trained-on labels
    test_images: np.ndarray
    test_labels: np.ndarray
    corruption: label_corruption.LabelCorruption | None
    record: SourceRecord | None = None  # what was read (recorded in experiment.json)

    @property
    def num_train(self) -> int:
        return int(self.train_labels.size)

    @property
    def num_test(self) -> int:
        return int(self.test_labels.size)


def open_source(dataset: str, data_dir: str | os.PathLike | None) -> OpenedSource:
    """The source for `--dataset` and `--data_dir` (see the module docstring).

    Training's defaults (Debian's Fashion-MNIST when no data_dir is given) are decided
    here; the name itself is resolved by `heldout.datasets.open_source`.

    Args:
      dataset: `fashion_mnist` / `mnist` (IDX folder, or a TFDS data_dir), `npz`, or the
        name of a TFDS dataset (optionally `name:version`).
      data_dir: a folder of IDX files, a TFDS data_dir, or the `.npz` file; None only for
        Debian's Fashion-MNIST.

    Returns:
      The opened source, with `data_dir` absolute.

    Raises:
      TrainingError: no data where the default points, or a missing data_dir.
      DatasetError: the data cannot be read (the message names the file or folder).
    """
    if not dataset:
        raise TrainingError("dataset is empty: name the data to train on")
    if data_dir is None:
        if dataset != "fashion_mnist":
            raise TrainingError(
                f"{dataset} has no default data: pass data_dir, a folder of IDX files "
                "(train-images-idx3-ubyte.gz, ...), a prepared TFDS data_dir, or (with "
                "dataset npz) a .npz file"
            )
        data_dir = DEBIAN_FASHION_MNIST_DIR
        if not is_idx_folder(data_dir):
            raise TrainingError(
                f"{data_dir}: Debian's Fashion-MNIST files are not installed (run setup.sh, "
                "or `apt-get install dataset-fashion-mnist`), or pass data_dir"
            )
    data_dir = str(Path(data_dir).expanduser().absolute())
    if dataset == NPZ_DATASET and not Path(data_dir).is_file():
        raise TrainingError(
            f"{data_dir}: dataset npz needs data_dir to be a .npz file holding "
            "x_train, y_train, x_test and y_test"
        )
    return datasets_open_source(dataset, data_dir, splits=TRAINING_SPLITS)


def _source_files(opened: OpenedSource) -> tuple[dict, ...]:
    """Identities of the files read: the IDX files, the .npz, or TFDS's dataset_info.json."""
    if opened.kind == "npz":
        return (file_identity(opened.data_dir),)
    if opened.kind == "idx":
        folder = Path(opened.data_dir)
        return tuple(
            file_identity(folder / name)
            for stems in IDX_FILES.values()
            for stem in stems
            for name in (stem + ".gz", stem)
            if (folder / name).is_file()
        )
    info = Path(opened.source.builder.data_dir) / "dataset_info.json"
    return (file_identity(info),) if info.is_file() else ()


def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(repr((images.shape, str(images.dtype))).encode())
    digest.update(np.ascontiguousarray(images).data)
    digest.update(np.ascontiguousarray(labels, dtype="<i8").data)
    return digest.hexdigest()


def source_record(opened: OpenedSource) -> SourceRecord:
    """The record of what `opened` serves (loads its splits; the source caches them)."""
    arrays = {split: opened.source.load_arrays(split) for split in TRAINING_SPLITS}
    return SourceRecord(
        kind=opened.kind,
        name=opened.name,
        path=opened.data_dir,
        index_order=opened.index_order,
        num_examples={split: int(len(a)) for split, a in arrays.items()},
        sha256={split: _digest(a.images, a.labels) for split, a in arrays.items()},
        files=_source_files(opened),
    )


def load_training_data(
    config: TrainingConfig,
    corruption: label_corruption.LabelCorruption | None = None,
    opened: OpenedSource | None = None,
    record: SourceRecord | None = None,
) -> TrainingData:
    """Loads both splits into memory and applies `corruption` to the training labels.

    Args:
      config: the experiment's config (its dataset and data_dir).
      corruption: the experiment's label corruption, or None for clean labels.
      opened: what `open_source` returned for this config, to avoid opening it twice.
      record: `source_record(opened)` when already computed (it digests every array).

    Returns:
      The data, with the trained-on labels.
    """
    opened = opened or open_source(config.dataset, config.data_dir)
    source = opened.source
    train = source.load_arrays("train")
    test = source.load_arrays("test")
    labels = train.labels if corruption is None else corruption.apply(train.labels)
    eval_source = source if corruption is None else relabeled.RelabeledSource(source, corruption)
    return TrainingData(
        source=eval_source,
        source_name=opened.name,
        data_dir=opened.data_dir,
        index_order=opened.index_order,
        num_classes=source.num_classes,
        train_images=train.images,
        train_labels=labels,
        test_images=test.images,
        test_labels=test.labels,
        corruption=corruption,
        record=record or source_record(opened),
    )
