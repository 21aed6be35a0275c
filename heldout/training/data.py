"""The training data: which source `--dataset`/`--data_dir` name, loaded into memory.

A folder of IDX files is read in the files' order (`<dataset>_idx`, index order `idx`);
anything else is taken as a prepared TFDS data_dir (TFDS order). The data_dir is made
absolute here, once, because it is recorded in `experiment.json`: a relative path there
would point elsewhere for every later tool run from another directory.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from heldout.datasets import DataSource, get_source
from heldout.datasets.idx import DEBIAN_FASHION_MNIST_DIR, IDX_FILES
from heldout.errors import TrainingError
from heldout.training import label_noise
from heldout.training.config import DATASETS, TrainingConfig


@dataclasses.dataclass(frozen=True)
class OpenedSource:
    """A data source chosen for training, before its arrays are loaded."""

    source: DataSource
    name: str  # the source name recorded as the experiment's dataset
    index_order: str  # `idx` or `tfds`
    data_dir: str  # absolute


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
    train_images: np.ndarray  # uint8 [N, 28, 28, 1]
    train_labels: np.ndarray  # int64 [N], trained-on labels
    test_images: np.ndarray
    test_labels: np.ndarray
    corruption: label_noise.LabelCorruption | None

    @property
    def num_train(self) -> int:
        return int(self.train_labels.size)

    @property
    def num_test(self) -> int:
        return int(self.test_labels.size)


def _is_idx_folder(path: str | os.PathLike) -> bool:
    folder = Path(path)
    stem = IDX_FILES["train"][0]
    return (folder / stem).is_file() or (folder / (stem + ".gz")).is_file()


def open_source(dataset: str, data_dir: str | os.PathLike | None) -> OpenedSource:
    """The source for `--dataset` and `--data_dir` (see the module docstring).

    Args:
      dataset: one of `heldout.training.config.DATASETS`.
      data_dir: a folder of IDX files or a TFDS data_dir; None: Debian's Fashion-MNIST.

    Returns:
      The opened source, with `data_dir` absolute.

    Raises:
      TrainingError: unknown dataset, or no data where the default points.
    """
    if dataset not in DATASETS:
        raise TrainingError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if data_dir is None:
        if dataset != "fashion_mnist":
            raise TrainingError(
                f"{dataset} has no default data: pass --data_dir, a folder of IDX files "
                "(train-images-idx3-ubyte.gz, ...) or a prepared TFDS data_dir"
            )
        data_dir = DEBIAN_FASHION_MNIST_DIR
        if not _is_idx_folder(data_dir):
            raise TrainingError(
                f"{data_dir}: Debian's Fashion-MNIST files are not installed (run setup.sh, "
                "or `apt-get install dataset-fashion-mnist`), or pass --data_dir"
            )
    data_dir = str(Path(data_dir).expanduser().absolute())
    if _is_idx_folder(data_dir):
        name, order = f"{dataset}_idx", "idx"
    else:
        name, order = dataset, "tfds"
    return OpenedSource(get_source(name, data_dir), name, order, data_dir)


def load_training_data(
    config: TrainingConfig,
    corruption: label_noise.LabelCorruption | None = None,
    opened: OpenedSource | None = None,
) -> TrainingData:
    """Loads both splits into memory and applies `corruption` to the training labels.

    Args:
      config: the experiment's config (its dataset and data_dir).
      corruption: the experiment's label corruption, or None for clean labels.
      opened: what `open_source` returned for this config, to avoid opening it twice.

    Returns:
      The data, with the trained-on labels.
    """
    opened = opened or open_source(config.dataset, config.data_dir)
    source = opened.source
    train = source.load_arrays("train")
    test = source.load_arrays("test")
    labels = train.labels if corruption is None else corruption.apply(train.labels)
    eval_source = source if corruption is None else label_noise.RelabeledSource(source, corruption)
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
    )
