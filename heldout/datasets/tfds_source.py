"""TFDS datasets (CIFAR-10/100, MNIST, Fashion-MNIST, or any prepared image-classification
dataset) read from a prepared data_dir, in TFDS order; nothing is downloaded.

The release's CIFAR `index_*` arrays are positions in this order for `cifar10:3.0.2`.
Order, preparation and `original_index`: `TfdsSource`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from heldout._core.atomic import write_text_atomic
from heldout.datasets.base import (
    ArraySplit,
    DatasetError,
    DataSource,
    check_batch_size,
    scale_to_unit,
    within_thread_limit,
)

# name → (number of classes, image shape). The release pinned cifar10 to 3.0.2; a bare
# `cifar10` means that version so indices line up with the checkpoints.
TFDS_DATASETS = {
    "cifar10": (10, (32, 32, 3)),
    "cifar100": (100, (32, 32, 3)),
    "mnist": (10, (28, 28, 1)),
    "fashion_mnist": (10, (28, 28, 1)),
}
DEFAULT_VERSIONS = {"cifar10": "3.0.2"}
_LOAD_BATCH = 10_000


def parse_original_index(ids):
    """`train_16399` → 16399 (tf.string tensor of any shape → int64 tensor)."""
    import tensorflow as tf

    return tf.strings.to_number(tf.strings.regex_replace(ids, r"^.*_", ""), tf.int64)


def _image_features(full_name: str, features) -> tuple[int, tuple[int, int, int]]:
    """(classes, image shape) of a TFDS dataset outside `TFDS_DATASETS`, from its features.

    Raises:
      DatasetError: no `image` feature of a fixed [H, W, C] shape, or no `label` class
        feature: not an image-classification dataset this toolkit can train and score.
    """
    import tensorflow_datasets as tfds

    image = features["image"] if "image" in features else None
    label = features["label"] if "label" in features else None
    shape = tuple(getattr(image, "shape", ()) or ())
    if (
        not isinstance(image, tfds.features.Image)
        or len(shape) != 3
        or any(d is None for d in shape)
        or not isinstance(label, tfds.features.ClassLabel)
    ):
        raise DatasetError(
            f"TFDS dataset {full_name!r} is not an image-classification dataset of fixed-size "
            "images: it needs an `image` feature of shape [H, W, C] and a `label` class "
            f"feature; its features are {sorted(features.keys())}."
        )
    return int(label.num_classes), tuple(int(d) for d in shape)


class TfdsSource(DataSource):
    """One TFDS dataset; `name` may carry a version (`cifar10:3.0.2`).

    The datasets of `TFDS_DATASETS` are checked against their known class count and image
    shape. Any other TFDS image-classification dataset prepared in `data_dir` (one with an
    `image` and a `label` feature, e.g. `svhn_cropped`, or a dataset of one's own built
    with `tfds.core`) is read the same way, its class count and image shape taken from its
    `dataset_info.json`: registered TFDS builders and builders only known from their
    prepared files (`tfds.builder` reads those) both work.

    Order: exactly what `tfds.load(name, split=split, shuffle_files=False)` yields with the
    default `ReadConfig`, which is deterministic; `index` is the position in that order.

    Nothing is downloaded: the builder is only asked to read, and a data_dir that does not
    hold the prepared version is an error that says how to prepare it.

    CIFAR examples carry an `id` such as `train_16399`, whose number is the example's position
    in the original CIFAR files; it is exposed as `original_index`. TFDS's MNIST-like datasets
    have no such feature (see `heldout.datasets.order` to recover that mapping from images).
    """

    def __init__(self, name: str, data_dir: str | os.PathLike | None = None):
        import tensorflow_datasets as tfds

        base_name, _, version = name.partition(":")
        version = version or DEFAULT_VERSIONS.get(base_name, "")
        full_name = f"{base_name}:{version}" if version else base_name
        try:
            builder = tfds.builder(
                full_name, data_dir=None if data_dir is None else os.fspath(data_dir)
            )
        # TFDS says AssertionError for an unknown version, DatasetNotFoundError (a
        # ValueError) for an unknown name, OSError for an unreadable folder; anything else
        # is a bug and keeps its traceback.
        except (AssertionError, ValueError, OSError) as e:
            # The first line: TFDS appends its whole catalogue of dataset names.
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DatasetError(
                f"cannot open TFDS dataset {full_name!r} in {data_dir}: {reason} (a TFDS "
                "dataset must be registered with TFDS or prepared in that data_dir)"
            ) from e
        if not builder.is_prepared():
            raise DatasetError(
                f"TFDS dataset {full_name!r} is not prepared in {builder.data_dir} (looked "
                f"under data_dir={data_dir or 'the TFDS default'}). This project never "
                "downloads it: prepare it once with "
                f"`tfds.builder({full_name!r}, data_dir=...).download_and_prepare()` "
                "(or copy a prepared folder there) and pass that data_dir."
            )
        self.builder = builder
        self.name = full_name
        self.num_classes, self.image_shape = TFDS_DATASETS.get(base_name) or _image_features(
            full_name, builder.info.features
        )
        self.splits = tuple(sorted(builder.info.splits.keys()))
        self.has_original_index = "id" in builder.info.features
        self._arrays: dict[str, ArraySplit] = {}  # load_arrays cache (small datasets only)
        label_classes = builder.info.features["label"].num_classes
        if label_classes != self.num_classes:
            raise DatasetError(
                f"{full_name}: TFDS says {label_classes} classes, expected {self.num_classes}."
            )

    def split_size(self, split: str) -> int:
        return self.builder.info.splits[self._check_split(split)].num_examples

    def _read(self, split: str, decode_images: bool = True):
        """Unbatched examples in TFDS order, with `index` (and `original_index`)."""
        import tensorflow as tf
        import tensorflow_datasets as tfds

        decoders = None if decode_images else {"image": tfds.decode.SkipDecoding()}
        ds = self.builder.as_dataset(
            split=self._check_split(split), shuffle_files=False, decoders=decoders
        )
        options = tf.data.Options()
        options.deterministic = True  # order is the point of this source
        ds = ds.with_options(options)
        with_id = self.has_original_index

        def select(index, example):
            out = {"image": example["image"], "label": example["label"], "index": index}
            if with_id:
                out["original_index"] = parse_original_index(example["id"])
            return out

        return ds.enumerate().map(select, num_parallel_calls=tf.data.AUTOTUNE)

    def as_dataset(self, split: str, batch_size: int):
        import tensorflow as tf

        batch_size = check_batch_size(batch_size)
        ds = self._read(split).batch(batch_size)
        ds = ds.map(
            lambda batch: {**batch, "image": scale_to_unit(batch["image"])},
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return within_thread_limit(ds.prefetch(tf.data.AUTOTUNE))

    def load_arrays(self, split: str) -> ArraySplit:
        """The whole split in memory (decoded once, then cached on this source)."""
        split = self._check_split(split)
        if split not in self._arrays:
            self._arrays[split] = self._load_arrays(split)
        return self._arrays[split]

    def _load_arrays(self, split: str) -> ArraySplit:
        columns: dict[str, list[np.ndarray]] = {}
        for batch in self._read(split).batch(_LOAD_BATCH).as_numpy_iterator():
            for key, value in batch.items():
                columns.setdefault(key, []).append(value)
        arrays = {key: np.concatenate(parts) for key, parts in columns.items()}
        if not arrays:
            raise DatasetError(f"{self.name} {split}: the split is empty.")
        if not np.array_equal(arrays["index"], np.arange(len(arrays["index"]))):
            raise DatasetError(f"{self.name} {split}: examples did not come back in order.")
        return ArraySplit(
            images=arrays["image"],
            labels=arrays["label"].astype(np.int64),
            original_index=arrays.get("original_index"),
        )

    def original_positions(self, split: str) -> np.ndarray:
        """int64 [N]: entry i = the original-file position of the i-th example in TFDS order.

        Read from CIFAR's `id` feature without decoding images. MNIST-like TFDS datasets
        have no `id`; use `heldout.datasets.order.match_orders` on the images instead.
        """
        if not self.has_original_index:
            raise DatasetError(
                f"{self.name} has no `id` feature, so TFDS does not record the original "
                "order; match images against the original files with "
                "heldout.datasets.order.match_orders."
            )
        parts = [
            batch["original_index"]
            for batch in self._read(split, decode_images=False)
            .batch(_LOAD_BATCH)
            .as_numpy_iterator()
        ]
        positions = np.concatenate(parts).astype(np.int64)
        if not np.array_equal(np.sort(positions), np.arange(len(positions))):
            raise DatasetError(
                f"{self.name} {split}: `id` numbers are not a permutation of 0..N-1."
            )
        return positions


def tfds_original_positions(
    name: str, split: str, data_dir: str | os.PathLike | None = None
) -> np.ndarray:
    """TFDS position → original position for a CIFAR split (see `TfdsSource.original_positions`)."""
    return TfdsSource(name, data_dir=data_dir).original_positions(split)


CHECKSUMS_DIR = "heldout_checksums"  # our folder inside a TFDS data_dir


def _offline_checksums(builder_cls, full_name: str, manual_dir: Path, data_dir: Path) -> Path:
    """Writes the checksums of the local files TFDS will read, in a folder of our own.

    For every URL the TFDS builder downloads, the file of the same name in `manual_dir`
    stands in for it; its size and SHA-256 go into
    `<data_dir>/heldout_checksums/<dataset>.tsv` (TFDS's checksum format), which records
    which files a prepared dataset was made from. Missing files are an error here, before
    TFDS would try the network.
    """
    import tensorflow_datasets as tfds

    registered = builder_cls.url_infos or {}
    lines, missing = [], []
    for url, info in sorted(registered.items()):
        local = manual_dir / (info.filename or url.rsplit("/", 1)[-1])
        if not local.is_file():
            missing.append(local.name)
            continue
        ours = tfds.download.checksums.compute_url_info(local)
        lines.append(f"{url}\t{int(ours.size)}\t{ours.checksum}\t{local.name}\n")
    if missing or not lines:
        raise DatasetError(
            f"{manual_dir}: cannot prepare {full_name} offline: missing {missing or 'all files'}"
            " (the files TFDS would download, under their download names). Nothing is "
            "downloaded."
        )
    path = data_dir / CHECKSUMS_DIR / f"{builder_cls.name}.tsv"
    write_text_atomic(path, "".join(lines))
    return path


def prepare_offline(
    name: str, data_dir: str | os.PathLike, manual_dir: str | os.PathLike
) -> TfdsSource:
    """Prepares a TFDS dataset from files already on disk (no network), then opens it.

    `manual_dir` holds the files under the names TFDS downloads (e.g. Debian's
    `/usr/share/datasets/fashion-mnist` for `fashion_mnist`, or `cifar-10-binary.tar.gz`).
    Their bytes may differ from the checksums TFDS ships for the original URLs (Debian
    recompresses the `.gz` files), so we register checksums of our own, computed from
    these files and kept in `<data_dir>/heldout_checksums/` (see `_offline_checksums`).

    Why not TFDS's `register_checksums=True`: it rewrites the checksum list inside the
    installed `tensorflow_datasets` package (a killed process leaves it modified for every
    user of that installation). Why not `tfds.download.add_checksums_dir`: for a dataset
    TFDS already knows, the package's own list wins over an added folder (and a second
    list for the same URLs is refused), so the Debian files would still fail validation.
    Instead the builder is asked through a subclass whose `url_infos` (the checksums its
    download manager validates against) are ours; nothing is written outside `data_dir`,
    and TFDS still verifies every file it reads against them.

    Args:
      name: the TFDS name, optionally with a version (`cifar10:3.0.2`; a bare `cifar10`
        means the release's version).
      data_dir: the TFDS data_dir to prepare into.
      manual_dir: the folder of local files.

    Returns:
      The prepared dataset, opened.

    Raises:
      DatasetError: an unsupported dataset, or a file missing from `manual_dir`.
    """
    import tensorflow_datasets as tfds

    base_name, _, version = name.partition(":")
    if base_name not in TFDS_DATASETS:
        raise DatasetError(
            f"unsupported TFDS dataset {name!r}; supported: {', '.join(TFDS_DATASETS)}."
        )
    version = version or DEFAULT_VERSIONS.get(base_name, "")
    full_name = f"{base_name}:{version}" if version else base_name
    data_dir, manual_dir = Path(data_dir).absolute(), Path(manual_dir).absolute()
    builder_cls = type(tfds.builder(full_name, data_dir=os.fspath(data_dir)))
    checksums = _offline_checksums(builder_cls, full_name, manual_dir, data_dir)
    offline_cls = type(
        builder_cls.__name__,
        (builder_cls,),
        {
            # The same module and name: TFDS finds the builder's metadata and writes the
            # prepared files exactly where `tfds.builder(full_name)` will read them.
            "__module__": builder_cls.__module__,
            "name": builder_cls.name,
            "url_infos": tfds.download.checksums.load_url_infos(checksums),
        },
        skip_registration=True,  # not a new dataset: no entry in TFDS's registry
    )
    builder = offline_cls(data_dir=os.fspath(data_dir), version=version or None)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=os.fspath(manual_dir),
            register_checksums=False,  # never write TFDS's own checksum lists
            force_checksums_validation=True,  # every file must have one of our checksums
        )
    )
    return TfdsSource(full_name, data_dir=data_dir)


def original_to_tfds_mapping(
    source: TfdsSource, split: str, idx_dir: str | os.PathLike | None = None
):
    """`OrderMapping` from the original order of `split` to `source`'s TFDS order.

    CIFAR: from the `id` feature. MNIST-like: by matching images against the IDX files in
    `idx_dir` (Fashion-MNIST defaults to Debian's folder), labels checked.
    """
    from heldout.datasets.idx import DEBIAN_FASHION_MNIST_DIR, load_idx_split
    from heldout.datasets.order import OrderMapping, match_orders

    if source.has_original_index:
        return OrderMapping.from_positions_in_a(source.original_positions(split))
    if idx_dir is None:
        if not source.name.startswith("fashion_mnist"):
            raise DatasetError(
                f"{source.name} has no `id` feature: give the folder of its original IDX "
                "files to match images against."
            )
        idx_dir = DEBIAN_FASHION_MNIST_DIR
    original = load_idx_split(idx_dir, split)
    in_tfds = source.load_arrays(split)
    return match_orders(
        original.images, in_tfds.images, original.labels, in_tfds.labels, "original", "tfds"
    )
