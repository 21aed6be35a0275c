"""Writes indexed ImageNet-style TFRecords that `heldout.datasets.imagenet` reads.

Inputs: a folder of images and a filename → index list (the release published one as
`imagenet_index.npz`). Records are sorted by `index` into contiguous shards, so reading
the shards in order yields index order. Labels and image encoding: `plan_records`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from heldout._core.atomic import file_mode, fsync_dir, fsync_file, write_json_atomic
from heldout._core.npz import load_npz
from heldout._core.write_safety import ensure_dir
from heldout.datasets.base import DatasetError
from heldout.datasets.imagenet import (
    FILENAME_KEY,
    IMAGE_KEY,
    INDEX_KEY,
    LABEL_KEY,
    METADATA_NAME,
    shard_name,
)
from heldout.datasets.jpeg import read_jpeg_frame
from heldout.errors import UsageError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_NPZ_PREFIX = {"train": "tr", "validation": "tt"}
_JPEG_MAGIC = b"\xff\xd8\xff"


@dataclasses.dataclass(frozen=True)
class IndexEntry:
    """One line of a filename → index list; `label` is 0-based, None when not listed."""

    filename: str
    index: int
    label: int | None = None


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """Everything one TFRecord example needs; `label` is 1-based as written."""

    path: Path
    index: int
    label: int
    synset: str = ""


@dataclasses.dataclass(frozen=True)
class BuildSummary:
    split: str
    num_examples: int
    num_shards: int
    num_reencoded: int
    files: tuple[Path, ...]


def read_index_list(
    path: str | os.PathLike, split: str = "train", allow_pickle: bool = False
) -> list[IndexEntry]:
    """Reads a filename → index list.

    Text (`.txt`, `.tsv`, `.csv`, ...): one `filename index [label]` per line, separated by
    whitespace or commas; `#` starts a comment. `.npz` (the published `imagenet_index.npz`:
    `tr_filenames`, `tr_labels`, `tt_filenames`, `tt_labels`): the index is the position;
    its filenames are pickled object arrays, so reading it needs `allow_pickle=True`, an
    explicit opt-in for a file you trust.
    """
    path = Path(path)
    if path.suffix == ".npz":
        return _read_index_npz(path, split, allow_pickle)
    entries = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:  # a binary file given as the list
        raise DatasetError(f"{path}: cannot read the index list as text ({e}).") from e
    first_line = True
    for number, line in enumerate(lines, start=1):
        fields = [f for f in re.split(r"[\s,]+", line.split("#", 1)[0].strip()) if f]
        if not fields:
            continue
        is_first, first_line = first_line, False
        if len(fields) not in (2, 3):
            raise DatasetError(f"{path}:{number}: expected `filename index [label]`, got {line!r}.")
        try:
            numbers = [int(f) for f in fields[1:]]
        except ValueError:
            if is_first:  # a header line such as `filename,index,label`
                continue
            raise DatasetError(
                f"{path}:{number}: index and label must be integers: {line!r}."
            ) from None
        label = numbers[1] if len(numbers) > 1 else None
        entries.append(IndexEntry(fields[0], numbers[0], label))
    _check_entries(path, entries)
    return entries


def _read_index_npz(path: Path, split: str, allow_pickle: bool) -> list[IndexEntry]:
    if split not in _NPZ_PREFIX:
        raise DatasetError(f"{path}: split must be one of {sorted(_NPZ_PREFIX)}, got {split!r}.")
    prefix = _NPZ_PREFIX[split]
    try:
        data = load_npz(
            path,
            keys=[f"{prefix}_filenames"],
            allow_pickle=allow_pickle,
            error=DatasetError,
            what=f"an index file with `{prefix}_filenames` (imagenet_index.npz) for {split}",
        )
    except DatasetError as error:
        if allow_pickle or "pickle" not in str(error):
            raise
        raise DatasetError(
            f"{error}. The published imagenet_index.npz stores its filenames that way: pass "
            "allow_pickle=True only if you trust this file."
        ) from None
    filenames = data[f"{prefix}_filenames"]
    labels = data.get(f"{prefix}_labels")
    if filenames.ndim != 1 or (labels is not None and labels.shape != filenames.shape):
        raise DatasetError(
            f"{path}: `{prefix}_filenames` must be [N] with `{prefix}_labels` of the same shape, "
            f"got {filenames.shape} and {None if labels is None else labels.shape}."
        )
    if labels is not None and not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{path}: `{prefix}_labels` has dtype {labels.dtype}; expected integers."
        )
    names = [f.decode() if isinstance(f, bytes) else str(f) for f in filenames]
    entries = [
        IndexEntry(name, i, None if labels is None else int(labels[i]))
        for i, name in enumerate(names)
    ]
    _check_entries(path, entries)
    return entries


def _check_entries(path, entries: Sequence[IndexEntry]) -> None:
    """Every filename once, every index once and non-negative.

    Counting in one pass (not `names.count` per name): ImageNet's 1.28 M names would
    otherwise take hours before a duplicate is reported.
    """
    if not entries:
        raise DatasetError(f"{path}: the index list is empty.")
    name_counts = collections.Counter(e.filename for e in entries)
    if len(name_counts) != len(entries):
        dupes = sorted(name for name, count in name_counts.items() if count > 1)
        raise DatasetError(
            f"{path}: {len(dupes)} filename(s) listed more than once, e.g. {dupes[:5]}."
        )
    indices = np.fromiter((e.index for e in entries), dtype=np.int64, count=len(entries))
    negative = indices[indices < 0]
    if negative.size:
        raise DatasetError(
            f"{path}: indices must be non-negative; found {negative.size}, e.g. "
            f"{negative[:5].tolist()}."
        )
    values, counts = np.unique(indices, return_counts=True)
    if values.size != indices.size:
        raise DatasetError(
            f"{path}: indices must be distinct; {int((counts > 1).sum())} appear more than "
            f"once, e.g. {values[counts > 1][:5].tolist()}."
        )


def find_images(image_dir: str | os.PathLike) -> dict[str, Path]:
    """Basename → path of every image under `image_dir` (recursive)."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: image folder does not exist.")
    found: dict[str, Path] = {}
    for path in sorted(image_dir.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.name in found:
                raise DatasetError(
                    f"{image_dir}: two images named {path.name} ({found[path.name]} and "
                    f"{path}); the index list names files by basename."
                )
            found[path.name] = path
    if not found:
        raise DatasetError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) found.")
    return found


def synset_label_map(
    image_dir: str | os.PathLike, labels_file: str | os.PathLike | None = None
) -> dict[str, int]:
    """Synset folder name → 1-based label (sorted folder names, or a labels file's order)."""
    if labels_file is not None:
        try:
            lines = Path(labels_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetError(f"{labels_file}: cannot read the labels file ({e}).") from e
        synsets = [s.strip() for s in lines if s.strip()]
    else:
        synsets = sorted(p.name for p in Path(image_dir).iterdir() if p.is_dir())
    return {synset: label for label, synset in enumerate(synsets, start=1)}


def plan_records(
    entries: Sequence[IndexEntry],
    images: dict[str, Path],
    image_dir: str | os.PathLike,
    synset_labels: dict[str, int] | None = None,
) -> list[ImageRecord]:
    """Joins the index list with the found images; returns records sorted by index.

    Images are `<dir>/<synset>/<file>.JPEG` as ImageNet ships, or flat. Labels come from the
    index list when it has them (0-based, as published) and otherwise from the synset folder
    (synsets in sorted order, or in the order of a labels file, → 1 … K); when both are known
    they must agree. Records are written 1-based.

    Images are stored as RGB JPEG. JPEGs whose frame header says 1 or 3 colour components
    are stored byte-for-byte; anything else (PNG, CMYK/YCCK JPEG: ImageNet's training set has
    22) is decoded to RGB and re-encoded as JPEG at quality 100, like the release's builder
    did. CMYK is told from the header (`heldout.datasets.jpeg`), not from the decoded shape:
    TensorFlow decodes CMYK to 3 channels, which hid them.
    """
    image_dir = Path(image_dir)
    missing = [e.filename for e in entries if e.filename not in images]
    if missing:
        raise DatasetError(
            f"{image_dir}: {len(missing)} listed image(s) not found, e.g. {missing[:5]}."
        )
    records = []
    disagree = []
    for entry in entries:
        path = images[entry.filename]
        relative = path.relative_to(image_dir)
        synset = relative.parts[0] if len(relative.parts) > 1 else ""
        folder_label = (synset_labels or {}).get(synset)
        if entry.label is not None:
            label = entry.label + 1
            if folder_label is not None and folder_label != label:
                disagree.append((entry.filename, entry.label, folder_label - 1))
        elif folder_label is not None:
            label = folder_label
        else:
            raise DatasetError(
                f"no label for {entry.filename}: the index list has none and its folder "
                f"{synset or image_dir} is not a known synset."
            )
        records.append(ImageRecord(path, entry.index, label, synset))
    if disagree:
        raise DatasetError(
            f"{len(disagree)} label(s) in the index list disagree with the synset folders "
            f"(filename, list label, folder label; 0-based): {disagree[:5]}."
        )
    return sorted(records, key=lambda r: r.index)


def encode_image(path: Path) -> tuple[bytes, int, int, bool]:
    """(RGB JPEG bytes, height, width, re-encoded?) for one image file.

    A JPEG with 1 or 3 components is kept as it is (decoded once, to check it is whole);
    CMYK/YCCK JPEGs (told from the header: TensorFlow would decode them to 3 channels
    without saying so), PNGs and JPEGs whose header cannot be read are decoded to RGB and
    re-encoded.
    """
    import tensorflow as tf

    data = path.read_bytes()
    try:
        if data[:3] == _JPEG_MAGIC:
            frame = read_jpeg_frame(data)
            image = tf.io.decode_jpeg(data, channels=0)
            if frame is not None and frame.components in (1, 3):
                return data, int(image.shape[0]), int(image.shape[1]), False
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError as e:
        raise DatasetError(f"{path}: not a decodable image ({e.message}).") from e
    jpeg = tf.io.encode_jpeg(image, format="rgb", quality=100).numpy()
    return jpeg, int(image.shape[0]), int(image.shape[1]), True


def make_example(
    jpeg: bytes,
    label: int,
    index: int,
    filename: str,
    height: int,
    width: int,
    synset: str = "",
):
    """The `tf.train.Example` of one image (label 1-based)."""
    import tensorflow as tf

    def int64(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def raw(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                INDEX_KEY: int64(index),
                LABEL_KEY: int64(label),
                IMAGE_KEY: raw(jpeg),
                FILENAME_KEY: raw(filename.encode()),
                "image/height": int64(height),
                "image/width": int64(width),
                "image/channels": int64(3),
                "image/colorspace": raw(b"RGB"),
                "image/format": raw(b"JPEG"),
                "image/class/synset": raw(synset.encode()),
            }
        )
    )


def write_tfrecords(
    records: Sequence[ImageRecord],
    output_dir: str | os.PathLike,
    split: str,
    num_shards: int,
    num_threads: int = 4,
    progress: Callable[[int], None] | None = None,
    sources: dict | None = None,
) -> BuildSummary:
    """Writes `records` (in the given order) into `num_shards` contiguous shards.

    Each shard is written under a hidden temporary name, fsynced and renamed when complete,
    so a crash leaves no half-written shard under a final name. A `<split>-metadata.json`
    sidecar records the count (the reader uses it instead of counting records), the
    re-encoded files, and `sources` (what the records were built from).

    Args:
      records: the images, in the order they are to be read back (`plan_records`).
      output_dir: the folder of shards (created if missing).
      split: "train" or "validation": the shard names' prefix.
      num_shards: how many files; between 1 and the number of records.
      num_threads: shards written in parallel.
      progress: called with 1 after each record.
      sources: recorded as is in the metadata (e.g. the image folder and index file).

    Returns:
      What was written.

    Raises:
      UsageError: `num_shards` out of range.
      DatasetError: an image cannot be decoded (the message names it).
    """
    import tensorflow as tf

    if num_shards < 1 or num_shards > max(1, len(records)):
        raise UsageError(f"num_shards must be in [1, {len(records)}], got {num_shards}.")
    output_dir = Path(output_dir)
    ensure_dir(output_dir)
    bounds = np.linspace(0, len(records), num_shards + 1).astype(int)

    # TensorFlow's writer opens its file as `fopen` does, following a link: the shards
    # are written in a private folder of ours (0700, new) and renamed out of it.
    private = Path(tempfile.mkdtemp(prefix=".heldout-shards-", suffix=".tmp", dir=output_dir))

    def write_shard(shard: int) -> tuple[Path, list[str]]:
        final = output_dir / shard_name(split, shard, num_shards)
        temporary = private / final.name
        reencoded = []
        try:
            with tf.io.TFRecordWriter(str(temporary)) as writer:
                for record in records[bounds[shard] : bounds[shard + 1]]:
                    jpeg, height, width, changed = encode_image(record.path)
                    if changed:
                        reencoded.append(record.path.name)
                    example = make_example(
                        jpeg,
                        record.label,
                        record.index,
                        record.path.name,
                        height,
                        width,
                        record.synset,
                    )
                    writer.write(example.SerializeToString())
                    if progress is not None:
                        progress(1)
            fsync_file(temporary)
            os.chmod(temporary, file_mode())
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return final, reencoded

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
            results = list(pool.map(write_shard, range(num_shards)))
    finally:
        shutil.rmtree(private, ignore_errors=True)
    fsync_dir(output_dir)
    indices = [r.index for r in records]
    reencoded = sorted(name for _, names in results for name in names)
    metadata = {
        "split": split,
        "num_examples": len(records),
        "num_shards": num_shards,
        "index_min": int(min(indices)),
        "index_max": int(max(indices)),
        "sorted_by_index": indices == sorted(indices),
        "label_base": 1,
        "reencoded_as_rgb_jpeg": reencoded,
        "sources": sources or {},
    }
    write_json_atomic(output_dir / METADATA_NAME.format(split=split), metadata)
    return BuildSummary(
        split=split,
        num_examples=len(records),
        num_shards=num_shards,
        num_reencoded=len(reencoded),
        files=tuple(path for path, _ in results),
    )
