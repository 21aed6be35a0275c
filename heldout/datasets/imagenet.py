"""ImageNet from indexed TFRecords, preprocessed as the release evaluated it.

The records carry an `index` feature (the example's position in the release's ImageNet
order); evaluation preprocessing is the release's ResNet-50 input. Features, file names,
preprocessing and order: `ImageNetSource`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from heldout.datasets.base import DatasetError, DataSource, check_batch_size, within_thread_limit

IMAGE_SIZE = 224
CROP_PADDING = 32  # crop side = IMAGE_SIZE / (IMAGE_SIZE + CROP_PADDING) of the short side
MEAN_RGB = (0.485, 0.456, 0.406)
STDDEV_RGB = (0.229, 0.224, 0.225)
NUM_CLASSES = 1000
# Sizes of the release's splits (the `index` ranges in the spec).
RELEASE_SPLIT_SIZES = {"train": 1_281_167, "validation": 50_000}

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
INDEX_KEY = "index"
FILENAME_KEY = "image/filename"
SPLITS = ("train", "validation")
SPLIT_ALIASES = {"test": "validation"}
# Written by our builder beside the shards: {"split": ..., "num_examples": N, ...}.
METADATA_NAME = "{split}-metadata.json"
_SHARD_RE = re.compile(r"^(?P<split>[a-z]+)-(?P<shard>\d{5})-of-(?P<total>\d{5})$")


def shard_name(split: str, shard: int, num_shards: int) -> str:
    return f"{split}-{shard:05d}-of-{num_shards:05d}"


def find_shards(directory: str | os.PathLike, split: str) -> list[Path]:
    """The split's shard files in name (= shard) order; checks none is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: TFRecord folder does not exist.")
    shards = []
    totals = set()
    for path in sorted(directory.iterdir()):
        match = _SHARD_RE.match(path.name)
        if match and match["split"] == split:
            shards.append(path)
            totals.add(int(match["total"]))
    if not shards:
        raise DatasetError(
            f"{directory}: no TFRecord shards for split {split!r} (expected files named "
            f"{shard_name(split, 0, 128)} etc.)."
        )
    if len(totals) != 1 or len(shards) != totals.pop():
        raise DatasetError(
            f"{directory}: {split} shards are incomplete or mixed: found {len(shards)} files "
            f"({shards[0].name} … {shards[-1].name})."
        )
    return shards


def center_crop_window(image_height, image_width, image_size: int = IMAGE_SIZE):
    """[offset_y, offset_x, side, side] of the centred evaluation crop (int32 tensor)."""
    import tensorflow as tf

    short_side = tf.cast(tf.minimum(image_height, image_width), tf.float32)
    side = tf.cast(short_side * (image_size / (image_size + CROP_PADDING)), tf.int32)
    offset_y = (image_height - side + 1) // 2
    offset_x = (image_width - side + 1) // 2
    return tf.stack([offset_y, offset_x, side, side])


def preprocess_for_eval(jpeg_bytes, image_size: int = IMAGE_SIZE):
    """JPEG bytes → float32 [image_size, image_size, 3], normalized (see module doc)."""
    import tensorflow as tf

    shape = tf.image.extract_jpeg_shape(jpeg_bytes)
    window = center_crop_window(shape[0], shape[1], image_size)
    image = tf.image.decode_and_crop_jpeg(jpeg_bytes, window, channels=3)
    image = tf.image.convert_image_dtype(image, tf.float32)  # [0, 1]
    # TF1 bilinear resize (half_pixel_centers=False), as the release's TF1-style code did.
    image = tf.compat.v1.image.resize(
        image[tf.newaxis], [image_size, image_size], method=tf.image.ResizeMethod.BILINEAR
    )[0]
    image = tf.reshape(image, [image_size, image_size, 3])
    return (image - tf.constant(MEAN_RGB)) / tf.constant(STDDEV_RGB)


def parse_example(serialized, with_filename: bool = False):
    """Serialized Example → {"jpeg", "label" (0-based int64), "index"[, "filename"]}."""
    import tensorflow as tf

    spec = {
        IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
        INDEX_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
    if with_filename:
        spec[FILENAME_KEY] = tf.io.FixedLenFeature([], tf.string, default_value="")
    features = tf.io.parse_single_example(serialized, spec)
    out = {
        "jpeg": features[IMAGE_KEY],
        "label": features[LABEL_KEY] - 1,  # TFRecord labels are 1-based
        "index": features[INDEX_KEY],
    }
    if with_filename:
        out["filename"] = features[FILENAME_KEY]
    return out


class ImageNetSource(DataSource):
    """Indexed ImageNet TFRecords in `directory`; split `test` means `validation`.

    Records are `tf.train.Example`s with the features of the release's TFRecord builder:
    `image/encoded` (JPEG bytes), `image/class/label` (1-based: 1 … 1000, as in the
    long-standing ImageNet TFRecords), `index` (0 … 1 281 166 for train, 0 … 49 999 for
    validation), plus `image/filename`, `image/height`, `image/width`. Files are named
    `<split>-<shard>-of-<shards>` with split `train` or `validation`.

    Evaluation preprocessing (the classic Cloud-TPU ResNet recipe): take a centred square
    crop whose side is 224/256 of the shorter image side, decode only that window, scale
    pixels to [0, 1], resize to 224×224 with TF1's bilinear resize (the release called
    `tf.compat.v1.image.resize`, i.e. `half_pixel_centers=False`), then normalize with mean
    (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).

    Order: files are read one after another in name order and records in file order. The
    builder in `tools/build_imagenet_tfrecords.py` writes records sorted by `index`, making
    file order = index order; for TFRecords from elsewhere, use the `index` feature (always
    present in the batches) to align results.
    """

    def __init__(self, directory: str | os.PathLike, num_classes: int = NUM_CLASSES):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise DatasetError(f"imagenet: TFRecord folder {self.directory} does not exist.")
        self.name = "imagenet"
        self.num_classes = num_classes
        self.image_shape = (IMAGE_SIZE, IMAGE_SIZE, 3)
        self.splits = tuple(s for s in SPLITS if any(self.directory.glob(f"{s}-*-of-*")))
        if not self.splits:
            raise DatasetError(
                f"imagenet: {self.directory} holds no TFRecord shards "
                f"(expected {shard_name('validation', 0, 128)} etc.)."
            )
        self._sizes: dict[str, int] = {}

    def _check_split(self, split: str) -> str:
        return super()._check_split(SPLIT_ALIASES.get(split, split))

    def metadata(self, split: str) -> dict | None:
        """The builder's sidecar for the split, or None for TFRecords from elsewhere."""
        path = self.directory / METADATA_NAME.format(split=self._check_split(split))
        if not path.is_file():
            return None
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DatasetError(f"{path}: unreadable metadata ({e}).") from e
        count = meta.get("num_examples") if isinstance(meta, dict) else None
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise DatasetError(
                f"{path}: not the builder's metadata (expected a JSON object with a "
                f"non-negative integer `num_examples`, got {type(meta).__name__} "
                f"{str(meta)[:80]}); remove it to count the records instead."
            )
        return meta

    def split_size(self, split: str) -> int:
        split = self._check_split(split)
        if split not in self._sizes:
            meta = self.metadata(split)
            if meta is not None:
                self._sizes[split] = int(meta["num_examples"])
            else:  # count records once (reads the files; no image decoding)
                import tensorflow as tf

                files = [str(p) for p in find_shards(self.directory, split)]
                self._sizes[split] = int(
                    tf.data.TFRecordDataset(files).reduce(
                        tf.constant(0, tf.int64), lambda n, _: n + 1
                    )
                )
        return self._sizes[split]

    def raw_dataset(self, split: str, with_filename: bool = False):
        """Unbatched parsed records (JPEG bytes, 0-based label, index) in file order."""
        import tensorflow as tf

        files = [str(p) for p in find_shards(self.directory, self._check_split(split))]
        # Sequential reading keeps file order; decoding, the real cost, runs in parallel.
        ds = tf.data.TFRecordDataset(files, buffer_size=8 << 20)
        return ds.map(
            lambda record: parse_example(record, with_filename),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def as_dataset(self, split: str, batch_size: int):
        import tensorflow as tf

        batch_size = check_batch_size(batch_size)

        def preprocess(example):
            return {
                "image": preprocess_for_eval(example["jpeg"]),
                "label": example["label"],
                "index": example["index"],
            }

        ds = self.raw_dataset(split).map(
            preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        return within_thread_limit(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE))

    def load_arrays(self, split: str):
        raise DatasetError(
            "imagenet: images have different sizes and the train split is ~140 GB, so it is "
            "not loaded into arrays; iterate `as_dataset(split, batch_size)` instead."
        )
