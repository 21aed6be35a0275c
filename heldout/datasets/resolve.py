"""The one resolver of dataset names: a name and a data_dir become an opened `DataSource`.

Training, evaluation and every command resolve names here, so one name means one source
in one order everywhere. Only the TFDS and ImageNet sources import TensorFlow Datasets /
build TFRecord readers, and only when asked for. Names: see `open_source`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from heldout.datasets.base import DatasetError, DataSource
from heldout.datasets.idx import DEBIAN_FASHION_MNIST_DIR, IDX_FILES, IdxSource

TFDS_NAMES = ("cifar10", "cifar100", "mnist", "fashion_mnist")
IDX_NAMES = ("fashion_mnist", "mnist")  # also read from a folder of IDX files
SOURCE_NAMES = TFDS_NAMES + ("fashion_mnist_idx", "mnist_idx", "npz", "imagenet")


@dataclasses.dataclass(frozen=True)
class OpenedSource:
    """A resolved data source and what an experiment records about it.

    Attributes:
      source: the opened provider.
      name: the source name an experiment records as its dataset (`fashion_mnist_idx`,
        `npz`, `imagenet`, a TFDS name with the version read unless it is one of the four
        the toolkit always knew).
      index_order: the order of its `index` feature: `idx`, `npz`, `tfrecord_index`, `tfds`.
      data_dir: absolute (`~` expanded): a folder, or the `.npz` file; None for TFDS's
        default data_dir.
      kind: `idx`, `npz`, `imagenet` or `tfds`.
    """

    source: DataSource
    name: str
    index_order: str
    data_dir: str | None
    kind: str = "idx"


def is_idx_folder(path: str | os.PathLike) -> bool:
    """Whether `path` holds the training images of an IDX dataset (`.gz` or not)."""
    folder = Path(path)
    stem = IDX_FILES["train"][0]
    return (folder / stem).is_file() or (folder / (stem + ".gz")).is_file()


def open_source(
    name: str, data_dir: str | os.PathLike | None = None, splits: Sequence[str] = ()
) -> OpenedSource:
    """The source called `name`, read from `data_dir`, checked to have `splits`.

    Names (the union of what evaluation's `get_source` and training's `open_source`
    accepted before they became this one function):
    * `cifar10` (= `cifar10:3.0.2`, the release's version), `cifar100`, `mnist`,
      `fashion_mnist` (`name:version` accepted): a TFDS data_dir already prepared (nothing
      is downloaded; None: TFDS's default); TFDS order; CIFAR batches add
      `original_index`.
    * `fashion_mnist`, `mnist` with `data_dir` a folder of IDX files, or
      `fashion_mnist_idx`, `mnist_idx` (Fashion-MNIST defaults to Debian's folder): the
      files' order.
    * `npz`: `data_dir` is the `.npz` file (`x_train`, `y_train`, `x_test`, `y_test`); row
      order.
    * `imagenet`: a folder of indexed TFRecords; order of the `index` feature.
    * any other name: a TFDS image-classification dataset (`image` and `label` features)
      prepared in the folder `data_dir`, e.g. `svhn_cropped`; TFDS order.

    Args:
      name: one of the names above.
      data_dir: where the data lies (see the names); `~` is expanded.
      splits: splits the caller needs (training: `train` and `test`); checked for the
        `npz` and TFDS sources, which may lack some.

    Returns:
      The opened source, with the name and order an experiment records.

    Raises:
      DatasetError: an unknown name, a data_dir missing or of the wrong kind, a source
        lacking one of `splits`, or data that cannot be read (the message names the file
        or folder).
    """
    if data_dir is not None:
        data_dir = str(Path(data_dir).expanduser().absolute())
    base_name = name.split(":", 1)[0]
    if name in ("fashion_mnist_idx", "mnist_idx") or (
        name in IDX_NAMES and data_dir is not None and is_idx_folder(data_dir)
    ):
        source_name = name if name.endswith("_idx") else f"{name}_idx"
        if data_dir is None:
            if source_name != "fashion_mnist_idx":
                raise DatasetError(
                    "mnist_idx needs data_dir: the folder holding train-images-idx3-ubyte.gz etc."
                )
            data_dir = DEBIAN_FASHION_MNIST_DIR
        return OpenedSource(
            IdxSource(source_name, data_dir), source_name, "idx", data_dir, kind="idx"
        )
    if name == "npz":
        return _open_npz(data_dir, splits)
    if name == "imagenet":
        if data_dir is None:
            raise DatasetError("imagenet needs data_dir: the folder of indexed TFRecords.")
        from heldout.datasets.imagenet import ImageNetSource

        source = ImageNetSource(data_dir)
        return OpenedSource(source, "imagenet", "tfrecord_index", data_dir, kind="imagenet")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise DatasetError(
            f"{data_dir}: not a folder; {name} reads a prepared TFDS data_dir "
            "(or, for fashion_mnist/mnist, a folder of IDX files)"
        )
    if base_name not in TFDS_NAMES and data_dir is None:
        raise DatasetError(
            f"unknown data source {name!r}; known: {', '.join(SOURCE_NAMES)}, or the name of "
            "a TFDS image-classification dataset prepared in a data_dir given with it."
        )
    return _open_tfds(name, data_dir, splits)


def _missing(source: DataSource, splits: Sequence[str]) -> list[str]:
    return [split for split in splits if split not in source.splits]


def _open_npz(data_dir: str | None, splits: Sequence[str]) -> OpenedSource:
    if data_dir is None:
        raise DatasetError("npz needs data_dir: the path of the .npz file.")
    if Path(data_dir).is_dir():  # a missing file: NpzSource says "file not found"
        raise DatasetError(
            f"{data_dir}: npz needs data_dir to be a .npz file holding x_train, y_train, "
            "x_test and y_test"
        )
    from heldout.datasets.numpy_source import NpzSource

    source = NpzSource(data_dir)
    missing = _missing(source, splits)
    if missing:
        raise DatasetError(
            f"{data_dir}: has no {' and '.join(missing)} split; needed: x_train, y_train, "
            f"x_test and y_test (splits found: {', '.join(source.splits)})"
        )
    return OpenedSource(source, "npz", "npz", data_dir, kind="npz")


def _open_tfds(name: str, data_dir: str | None, splits: Sequence[str]) -> OpenedSource:
    from heldout.datasets.tfds_source import TFDS_DATASETS, TfdsSource

    source = TfdsSource(name, data_dir=data_dir)
    missing = _missing(source, splits)
    if missing:
        raise DatasetError(
            f"TFDS dataset {source.name!r} in {data_dir} has no {' and '.join(missing)} "
            f"split (splits: {', '.join(source.splits)}); needed: {' and '.join(splits)}"
        )
    # Recorded with the version read, so later tools read that version even when a newer
    # one is prepared beside it; the four datasets the toolkit knew before keep the name
    # their experiments recorded (a bare `fashion_mnist`; `cifar10` means 3.0.2).
    recorded = source.name
    if ":" not in recorded and recorded not in TFDS_DATASETS:
        recorded = f"{recorded}:{source.builder.info.version}"
    return OpenedSource(source, recorded, "tfds", data_dir, kind="tfds")


def get_source(name: str, data_dir: str | os.PathLike | None = None) -> DataSource:
    """The data provider called `name`: `open_source(name, data_dir).source`.

    Args:
      name: a source name (see `open_source`: `cifar10`, `fashion_mnist_idx`, `npz`,
        `imagenet`, a TFDS dataset prepared in `data_dir`, ...).
      data_dir: a TFDS data_dir, a folder of IDX files or TFRecords, or the `.npz` file.

    Returns:
      A `DataSource` whose `as_dataset(split, batch_size)` yields batches of `image`
      (float32, preprocessed as the release evaluates), `label` and `index` (int64).

    Raises:
      DatasetError: an unknown name, a missing or wrong data_dir, or unreadable data.
    """
    return open_source(name, data_dir).source


def source_name_for(dataset: str | None, index_order: str | None) -> str | None:
    """The source that reads `dataset` in the order `index_order` (an experiment's meta).

    Experiments record the dataset they index (`cifar10:3.0.2`, `imagenet2012`,
    `fashion_mnist`) and the order of their `index_*` arrays (`tfds`, `tfrecord_index`,
    `idx`); the same dataset in a different order is a different source.
    """
    if not dataset:
        return None
    base = dataset.split(":", 1)[0]
    if base.startswith("imagenet"):
        return "imagenet"
    if index_order == "idx" and base in ("mnist", "fashion_mnist"):
        return f"{base}_idx"
    return dataset


def source_for_meta(
    meta, dataset: str | None = None, data_dir: str | os.PathLike | None = None
) -> DataSource:
    """The data source an experiment's runs were evaluated on, with its clean labels.

    `dataset` / `data_dir` win over the meta (`meta.dataset`, `meta.index_order`, and
    `meta.extra["data_dir"]` when recorded). Experiments with corrupted labels need
    `heldout.datasets.relabeled.experiment_source` instead.
    """
    name = dataset or source_name_for(
        getattr(meta, "dataset", None), getattr(meta, "index_order", None)
    )
    if name is None:
        raise DatasetError(
            f"experiment {getattr(meta, 'name', meta)!r} does not record its dataset; "
            "name the dataset and its data_dir"
        )
    if data_dir is None:
        data_dir = (getattr(meta, "extra", None) or {}).get("data_dir")
    return get_source(name, data_dir)
