"""Writes indexed ImageNet-style TFRecords that `heldout.datasets.imagenet` reads.

Inputs: a folder of images (`<dir>/<synset>/<file>.JPEG` as ImageNet ships, or flat) and
a filename → index list (which example gets which `index`; the release published one as
`imagenet_index.npz`). Labels come from the list when it has them (0-based, as published)
and otherwise from the synset folder (synsets in sorted order, or in the order of a labels
file, → 1 … K); when both are known they must agree. Records are written 1-based, sorted by
`index` into contiguous shards, so reading the shards in order yields index order.

Images are stored as RGB JPEG. Files that are JPEG with 1 or 3 channels are stored
byte-for-byte; anything else (PNG, CMYK JPEG — ImageNet has a few) is decoded and
re-encoded as RGB JPEG at quality 100, like the release's builder did.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from heldout.io import write_text_atomic
from heldout.datasets.base import DatasetError
from heldout.datasets.imagenet import (
    FILENAME_KEY,
    IMAGE_KEY,
    INDEX_KEY,
    LABEL_KEY,
    METADATA_NAME,
    shard_name,
)

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
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the index list ({e}).") from e
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
        with np.load(path, allow_pickle=allow_pickle) as data:
            filenames = data[f"{prefix}_filenames"]
            labels = data[f"{prefix}_labels"] if f"{prefix}_labels" in data.files else None
    except KeyError as e:
        raise DatasetError(f"{path}: missing key {e} for split {split!r}.") from e
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the index file ({e}).") from e
    except ValueError as e:
        if not allow_pickle:
            raise DatasetError(
                f"{path}: its filenames are a pickled object array; pass allow_pickle=True "
                "(--allow_pickle) only if you trust this file."
            ) from e
        raise DatasetError(f"{path}: {e}") from e
    names = [f.decode() if isinstance(f, bytes) else str(f) for f in filenames]
    entries = [
        IndexEntry(name, i, None if labels is None else int(labels[i]))
        for i, name in enumerate(names)
    ]
    _check_entries(path, entries)
    return entries


def _check_entries(path, entries: Sequence[IndexEntry]) -> None:
    if not entries:
        raise DatasetError(f"{path}: the index list is empty.")
    names = [e.filename for e in entries]
    indices = np.array([e.index for e in entries])
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})[:5]
        raise DatasetError(f"{path}: filenames listed more than once, e.g. {dupes}.")
    if (indices < 0).any() or len(np.unique(indices)) != len(indices):
        raise DatasetError(f"{path}: indices must be distinct and non-negative.")


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
        except OSError as e:
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
    """Joins the index list with the found images; returns records sorted by index."""
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
    """(RGB JPEG bytes, height, width, re-encoded?) for one image file."""
    import tensorflow as tf

    data = path.read_bytes()
    try:
        if data[:3] == _JPEG_MAGIC:
            image = tf.io.decode_jpeg(data, channels=0)
            if image.shape[-1] in (1, 3):
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
) -> BuildSummary:
    """Writes `records` (in the given order) into `num_shards` contiguous shards.

    Each shard is written under a temporary name and renamed when complete, so a crash
    leaves no half-written shard under a final name. A `<split>-metadata.json` sidecar
    records the count (the reader uses it instead of counting records).
    """
    import tensorflow as tf

    if num_shards < 1 or num_shards > max(1, len(records)):
        raise ValueError(f"num_shards must be in [1, {len(records)}], got {num_shards}.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(records), num_shards + 1).astype(int)

    def write_shard(shard: int) -> tuple[Path, int]:
        final = output_dir / shard_name(split, shard, num_shards)
        temporary = final.with_name(final.name + ".tmp")
        reencoded = 0
        with tf.io.TFRecordWriter(str(temporary)) as writer:
            for record in records[bounds[shard] : bounds[shard + 1]]:
                jpeg, height, width, changed = encode_image(record.path)
                reencoded += changed
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
        os.replace(temporary, final)
        return final, reencoded

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        results = list(pool.map(write_shard, range(num_shards)))
    indices = [r.index for r in records]
    metadata = {
        "split": split,
        "num_examples": len(records),
        "num_shards": num_shards,
        "index_min": int(min(indices)),
        "index_max": int(max(indices)),
        "sorted_by_index": indices == sorted(indices),
        "label_base": 1,
    }
    write_text_atomic(
        output_dir / METADATA_NAME.format(split=split), json.dumps(metadata, indent=2)
    )
    return BuildSummary(
        split=split,
        num_examples=len(records),
        num_shards=num_shards,
        num_reencoded=sum(n for _, n in results),
        files=tuple(path for path, _ in results),
    )
