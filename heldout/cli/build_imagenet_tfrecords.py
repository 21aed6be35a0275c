"""`tools/build_imagenet_tfrecords.py`: indexed ImageNet TFRecords from an image folder.

The index list is a text file of `filename index [label]` lines (label 0-based), or the
published `imagenet_index.npz` (its filenames are pickled: --allow_pickle only for a file
you trust). Labels missing from the list come from the synset folders. The output is read
by `heldout.datasets.get_source("imagenet", data_dir=<output_dir>)`; its
`<split>-metadata.json` records the inputs and the images re-encoded as RGB JPEG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import flags

from heldout.cli import app

FLAGS = flags.FLAGS
NAME = "build_imagenet_tfrecords"
DEFAULT_SHARDS = {"train": 1024, "validation": 128}


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
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


def main(argv: Sequence[str]) -> int:
    del argv
    from heldout._core.provenance import file_identity
    from heldout.datasets.tfrecord_builder import (
        find_images,
        plan_records,
        read_index_list,
        synset_label_map,
        write_tfrecords,
    )

    entries = read_index_list(FLAGS.index_file, FLAGS.split, FLAGS.allow_pickle)
    images = find_images(FLAGS.image_dir)
    labels = synset_label_map(FLAGS.image_dir, FLAGS.labels_file)
    records = plan_records(entries, images, FLAGS.image_dir, labels)
    num_shards = FLAGS.num_shards or min(DEFAULT_SHARDS[FLAGS.split], len(records))
    print(
        f"{len(records)} images ({len(images) - len(records)} found but not listed) → "
        f"{num_shards} shard(s) in {FLAGS.output_dir}"
    )
    sources = {
        "image_dir": os.path.abspath(FLAGS.image_dir),
        "index_file": file_identity(FLAGS.index_file),
        "labels_file": None if FLAGS.labels_file is None else file_identity(FLAGS.labels_file),
    }
    summary = write_tfrecords(
        records, FLAGS.output_dir, FLAGS.split, num_shards, FLAGS.num_threads, sources=sources
    )
    print(
        f"wrote {summary.num_examples} examples in {summary.num_shards} shard(s); "
        f"{summary.num_reencoded} re-encoded as RGB JPEG"
    )
    return app.EXIT_OK


def run() -> None:
    """The console entry point."""
    define_flags()
    app.run_command(main, name=NAME)
