"""Builds indexed ImageNet TFRecords (with an `index` feature) from an image folder.

  python tools/build_imagenet_tfrecords.py \
      --image_dir=/data/imagenet/val --index_file=imagenet_index.npz --allow_pickle \
      --split=validation --output_dir=/data/imagenet-indexed --num_shards=128

The index list is a text file of `filename index [label]` lines (label 0-based), or the
published `imagenet_index.npz` (its filenames are pickled: pass --allow_pickle only for a
file you trust). Labels missing from the list come from the synset folders. The output is
read by `heldout.datasets.get_source("imagenet", data_dir=<output_dir>)`.
"""

from __future__ import annotations

import sys

from absl import app, flags

from heldout.datasets.base import DatasetError
from heldout.datasets.tfrecord_builder import (
    find_images,
    plan_records,
    read_index_list,
    synset_label_map,
    write_tfrecords,
)

FLAGS = flags.FLAGS
flags.DEFINE_string("image_dir", None, "Folder of images (<synset>/<file>.JPEG or flat).")
flags.DEFINE_string("index_file", None, "Filename → index list (text or imagenet_index.npz).")
flags.DEFINE_string("output_dir", None, "Where to write the TFRecord shards.")
flags.DEFINE_enum("split", "validation", ["train", "validation"], "Split to build.")
flags.DEFINE_integer(
    "num_shards",
    None,
    "Shards to write (default: 1024 train, 128 validation, at most one per image).",
)
flags.DEFINE_integer("num_threads", 4, "Shards written in parallel.")
flags.DEFINE_string(
    "labels_file",
    None,
    "Synsets, one a line, in label order (default: the sorted synset folder names).",
)
flags.DEFINE_bool("allow_pickle", False, "Allow reading a pickled .npz index file.")
flags.mark_flags_as_required(["image_dir", "index_file", "output_dir"])

_DEFAULT_SHARDS = {"train": 1024, "validation": 128}


def main(argv):
    del argv
    try:
        entries = read_index_list(FLAGS.index_file, FLAGS.split, FLAGS.allow_pickle)
        images = find_images(FLAGS.image_dir)
        labels = synset_label_map(FLAGS.image_dir, FLAGS.labels_file)
        records = plan_records(entries, images, FLAGS.image_dir, labels)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    num_shards = FLAGS.num_shards or min(_DEFAULT_SHARDS[FLAGS.split], len(records))
    print(
        f"{len(records)} images ({len(images) - len(records)} found but not listed) → "
        f"{num_shards} shard(s) in {FLAGS.output_dir}"
    )
    summary = write_tfrecords(records, FLAGS.output_dir, FLAGS.split, num_shards, FLAGS.num_threads)
    print(
        f"wrote {summary.num_examples} examples in {summary.num_shards} shard(s); "
        f"{summary.num_reencoded} re-encoded as RGB JPEG"
    )
    return 0


if __name__ == "__main__":
    app.run(main)
