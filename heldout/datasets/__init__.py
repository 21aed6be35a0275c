"""Data providers with an `index` feature, and order mapping between dataset orders.

`get_source(name, data_dir)` returns a `DataSource` whose `as_dataset(split, batch_size)`
yields batches of `image` (float32, preprocessed as the release evaluates), `label`
(int64) and `index` (int64 position in the split, in that source's order):

* `cifar10` (= `cifar10:3.0.2`, the release's version), `cifar100`, `mnist`,
  `fashion_mnist` (`name:version` accepted): data_dir is a TFDS data_dir that is already
  prepared (nothing is downloaded); TFDS order; CIFAR batches add `original_index`.
* `fashion_mnist_idx`, `mnist_idx`: a folder of IDX files (Fashion-MNIST defaults to
  Debian's folder); original file order.
* `npz`: the `.npz` file; row order.
* `imagenet`: a folder of indexed TFRecords; order of the `index` feature.
* any other name: a TFDS image-classification dataset (`image` and `label` features)
  prepared in data_dir, e.g. `svhn_cropped` or a dataset of one's own; TFDS order.

Only the TFDS and ImageNet sources import TensorFlow Datasets / build TFRecord readers,
and only when asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from heldout.datasets.base import ArraySource, ArraySplit, DatasetError, DataSource
from heldout.datasets.idx import DEBIAN_FASHION_MNIST_DIR, IdxSource, load_idx_split

__all__ = [
    "ArraySource",
    "ArraySplit",
    "DataSource",
    "DatasetError",
    "DEBIAN_FASHION_MNIST_DIR",
    "SOURCE_NAMES",
    "get_source",
    "load_idx_split",
    "source_for_meta",
    "source_name_for",
]

TFDS_NAMES = ("cifar10", "cifar100", "mnist", "fashion_mnist")
SOURCE_NAMES = TFDS_NAMES + ("fashion_mnist_idx", "mnist_idx", "npz", "imagenet")


def get_source(name: str, data_dir: str | os.PathLike | None = None) -> DataSource:
    """The data provider called `name` (see the module docstring for names and data_dir)."""
    base_name = name.split(":", 1)[0]
    if base_name in TFDS_NAMES:
        from heldout.datasets.tfds_source import TfdsSource

        return TfdsSource(name, data_dir=data_dir)
    if name == "fashion_mnist_idx":
        return IdxSource(name, data_dir if data_dir is not None else DEBIAN_FASHION_MNIST_DIR)
    if name == "mnist_idx":
        if data_dir is None:
            raise DatasetError(
                "mnist_idx needs data_dir: the folder holding train-images-idx3-ubyte.gz etc."
            )
        return IdxSource(name, data_dir)
    if name == "npz":
        if data_dir is None:
            raise DatasetError("npz needs data_dir: the path of the .npz file.")
        from heldout.datasets.numpy_source import NpzSource

        return NpzSource(data_dir)
    if name == "imagenet":
        if data_dir is None:
            raise DatasetError("imagenet needs data_dir: the folder of indexed TFRecords.")
        from heldout.datasets.imagenet import ImageNetSource

        return ImageNetSource(data_dir)
    if data_dir is not None and Path(data_dir).is_dir():
        # Any other TFDS dataset prepared there; TfdsSource says so when it is not.
        from heldout.datasets.tfds_source import TfdsSource

        return TfdsSource(name, data_dir=data_dir)
    raise DatasetError(
        f"unknown data source {name!r}; known: {', '.join(SOURCE_NAMES)}, or the name of a "
        "TFDS image-classification dataset prepared in a data_dir given with it."
    )


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
            "pass it (demo.py: --dataset and --data_dir)"
        )
    if data_dir is None:
        data_dir = (getattr(meta, "extra", None) or {}).get("data_dir")
    return get_source(name, data_dir)
