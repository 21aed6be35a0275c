"""The record and the interface every data provider shares.

A provider ("source") yields batches of `image`, `label` and `index`, where `index` is the
position of the example in its split *in this source's order*. The released `index_*`
arrays refer to one specific order (TFDS order for CIFAR, the `index` feature for
ImageNet), so the order is part of what a source promises, not an accident of reading.

TensorFlow is imported only where a `tf.data.Dataset` is built, so array-only users (IDX
and `.npz` loading, order mapping) start fast.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from heldout.errors import DatasetError, UsageError  # noqa: F401 - re-exported


@dataclasses.dataclass(frozen=True)
class ArraySplit:
    """One split held in memory. Row `i` is the example with index `i`.

    Attributes:
      images: uint8 `[N, H, W, C]`, raw pixels (no preprocessing).
      labels: int64 `[N]`, 0-based class ids.
      original_index: optional int64 `[N]`: the example's position in the dataset's
        original files when this order differs from it (TFDS CIFAR, from its `id`
        feature); None when unknown or identical.
    """

    images: np.ndarray
    labels: np.ndarray
    original_index: np.ndarray | None = None

    def __post_init__(self):
        images, labels = self.images, self.labels
        if images.dtype != np.uint8 or images.ndim != 4:
            raise DatasetError(
                f"ArraySplit images must be uint8 [N, H, W, C]; got {images.dtype} "
                f"with shape {images.shape}."
            )
        if labels.dtype != np.int64 or labels.ndim != 1:
            raise DatasetError(
                f"ArraySplit labels must be int64 [N]; got {labels.dtype} with shape "
                f"{labels.shape}."
            )
        if len(labels) != len(images):
            raise DatasetError(f"ArraySplit has {len(images)} images but {len(labels)} labels.")
        if self.original_index is not None and self.original_index.shape != labels.shape:
            raise DatasetError(
                f"ArraySplit original_index has shape {self.original_index.shape}, "
                f"expected {labels.shape}."
            )

    def __len__(self) -> int:
        return len(self.labels)


class DataSource:
    """Base class of the data providers; see `heldout.datasets.get_source`.

    Subclasses set `name`, `num_classes`, `image_shape` and implement `split_size`,
    `as_dataset` and (for data that fits in memory) `load_arrays`.
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    splits: tuple[str, ...] = ("train", "test")

    def split_size(self, split: str) -> int:
        raise NotImplementedError

    def as_dataset(self, split: str, batch_size: int):
        """Batches of {"image": float32 [B,H,W,C], "label": int64 [B], "index": int64 [B]}.

        Images are preprocessed as the release evaluates them; batches come in index order
        (the last batch may be smaller).
        """
        raise NotImplementedError

    def load_arrays(self, split: str) -> ArraySplit:
        raise NotImplementedError(f"{type(self).__name__} does not load splits into memory.")

    def _check_split(self, split: str) -> str:
        if split not in self.splits:
            raise DatasetError(
                f"{self.name}: unknown split {split!r}; available: {', '.join(self.splits)}."
            )
        return split

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, num_classes={self.num_classes}, "
            f"image_shape={self.image_shape})"
        )


def check_batch_size(batch_size: int) -> int:
    """`batch_size` as an int; a user's bad value is a UsageError (not a bare ValueError)."""
    try:
        valid = int(batch_size) == batch_size and batch_size >= 1
    except (TypeError, ValueError):  # None, a string, NaN
        valid = False
    if not valid or isinstance(batch_size, bool):
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return int(batch_size)


def scale_to_unit(images):
    """uint8 pixels → float32 in [0, 1]: the CIFAR / MNIST evaluation input of the release."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 255.0


class ArraySource(DataSource):
    """A source whose splits are numpy arrays (loaded lazily, once per split).

    Subclasses implement `_load(split) -> ArraySplit`. Images are scaled to [0, 1]
    (float32 / 255) per batch, which is the release's input for CIFAR and MNIST-like data.
    """

    def __init__(
        self,
        name: str,
        num_classes: int,
        image_shape: tuple[int, int, int],
        splits: tuple[str, ...] = ("train", "test"),
    ):
        self.name = name
        self.num_classes = num_classes
        self.image_shape = tuple(image_shape)
        self.splits = tuple(splits)
        self._cache: dict[str, ArraySplit] = {}

    def _load(self, split: str) -> ArraySplit:
        raise NotImplementedError

    def load_arrays(self, split: str) -> ArraySplit:
        split = self._check_split(split)
        if split not in self._cache:
            arrays = self._load(split)
            self._validate(split, arrays)
            self._cache[split] = arrays
        return self._cache[split]

    def _validate(self, split: str, arrays: ArraySplit) -> None:
        if arrays.images.shape[1:] != self.image_shape:
            raise DatasetError(
                f"{self.name} {split}: images have shape {arrays.images.shape[1:]}, "
                f"expected {self.image_shape}."
            )
        if len(arrays) and (arrays.labels.min() < 0 or arrays.labels.max() >= self.num_classes):
            raise DatasetError(
                f"{self.name} {split}: labels must lie in [0, {self.num_classes}); found "
                f"[{arrays.labels.min()}, {arrays.labels.max()}]."
            )

    def split_size(self, split: str) -> int:
        return len(self.load_arrays(split))

    def as_dataset(self, split: str, batch_size: int):
        import tensorflow as tf

        batch_size = check_batch_size(batch_size)
        arrays = self.load_arrays(split)
        index = np.arange(len(arrays), dtype=np.int64)
        columns = {"image": arrays.images, "label": arrays.labels, "index": index}
        if arrays.original_index is not None:
            columns["original_index"] = arrays.original_index
        # Batch the raw uint8 arrays first and scale per batch: one vectorized op per batch
        # instead of one per example.
        ds = tf.data.Dataset.from_tensor_slices(columns).batch(batch_size)

        def preprocess(batch):
            return {**batch, "image": scale_to_unit(batch["image"])}

        ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return within_thread_limit(ds.prefetch(tf.data.AUTOTUNE))


def within_thread_limit(ds):
    """`ds` kept to the process's thread budget when one is set (TF_NUM_INTRAOP_THREADS).

    tf.data runs its parallel maps and prefetching on a thread pool of its own, sized to
    every core of the machine and deaf to TensorFlow's thread settings: a Dask worker given
    one of two cores (`heldout.cluster.worker_environment`) still ran its evaluations on
    both, so two such workers oversubscribed the machine. With the variable set, the
    dataset gets a private pool of that many threads and single-threaded ops; without,
    it is returned as it is. The batches and their order do not change.
    """
    try:
        threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0"))
    except ValueError:
        threads = 0
    if threads < 1:
        return ds
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)
