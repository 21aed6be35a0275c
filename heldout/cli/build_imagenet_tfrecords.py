"""`heldout build-imagenet-tfrecords`: indexed ImageNet TFRecords from an image folder.

The index list is a text file of `filename index [label]` lines, or the published
`imagenet_index.npz` (pickled: --allow_pickle). The output is read by
`heldout.datasets.get_source("imagenet", data_dir=<output_dir>)`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags

FLAGS = flags.FLAGS
NAME = "build_imagenet_tfrecords"
DEFAULT_SHARDS = {"train": 1024, "validation": 128}
EXAMPLES = """\
  heldout build-imagenet-tfrecords --image_dir=/data/imagenet/val \\
      --index_file=imagenet_index.npz --allow_pickle --split=validation \\
      --output_dir=/data/imagenet-indexed --num_shards=128"""


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    path = cli_flags.DEFINE_path
    help = "Folder of images (<synset>/<file>.JPEG or flat)."
    cli_flags.define(__name__, path, "image_dir", None, help, required=True)
    help = "Filename → index list (text or imagenet_index.npz)."
    cli_flags.define(__name__, path, "index_file", None, help, required=True)
    cli_flags.output_dir(__name__, "The TFRecord shards.", required=True)
    flags.DEFINE_enum("split", "validation", ["train", "validation"], "Split to build.")
    flags.DEFINE_integer(
        "num_shards",
        None,
        "Shards to write (default: 1024 train, 128 validation, at most one per image).",
    )
    flags.DEFINE_integer("num_threads", 4, "Shards written in parallel.")
    help = "Synsets, one a line, in label order (default: the sorted synset folder names)."
    cli_flags.define(__name__, path, "labels_file", None, help)
    cli_flags.allow_pickle(__name__)


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

    refuse_output_over_inputs(
        [FLAGS.output_dir], [FLAGS.index_file, FLAGS.labels_file], [FLAGS.image_dir]
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
    """The `heldout build-imagenet-tfrecords` command."""
    define_flags()
    app.run_command(main, name=NAME)
