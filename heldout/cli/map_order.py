"""`tools/map_order.py`: a published per-example score file, moved into TFDS order.

The released checkpoints' `index_*` arrays are TFDS positions, while the published
C-scores are in the original CIFAR order. The mapping comes from CIFAR's `id` feature, or
for MNIST-like data from matching images against the IDX files (--idx_dir). When the score
file carries `labels`, they are checked against the TFDS labels after the move. Output
keys: `scores`, `labels` (TFDS order), `original_index` (original position of each TFDS
example) and `provenance` (JSON: the input file, dataset and split it was made from).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from absl import flags

from heldout.cli import app

FLAGS = flags.FLAGS
NAME = "map_order"


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    flags.DEFINE_string(
        "scores", None, "Published score file (.npz with scores[, labels], or .npy)."
    )
    flags.DEFINE_string("dataset", None, "TFDS name: cifar10, cifar100, mnist, fashion_mnist.")
    flags.DEFINE_string("data_dir", None, "Prepared TFDS data_dir (default: TFDS's default).")
    flags.DEFINE_string("idx_dir", None, "Original IDX files for MNIST-like data.")
    flags.DEFINE_string("split", "train", "Split the scores belong to.")
    flags.DEFINE_string("output", None, "Where to write the .npz in TFDS order.")
    flags.mark_flags_as_required(["scores", "dataset", "output"])


def main(argv: Sequence[str]) -> int:
    del argv
    from heldout._core.atomic import write_npz_atomic
    from heldout._core.provenance import file_identity
    from heldout.datasets.order import permute_scores
    from heldout.datasets.tfds_source import TfdsSource, original_to_tfds_mapping
    from heldout.published.cscores import load_cscores

    published = load_cscores(FLAGS.scores)
    source = TfdsSource(FLAGS.dataset, FLAGS.data_dir)
    mapping = original_to_tfds_mapping(source, FLAGS.split, FLAGS.idx_dir)
    tfds_labels = source.load_arrays(FLAGS.split).labels
    scores = permute_scores(
        published.scores,
        mapping,
        published.labels,
        None if published.labels is None else tfds_labels,
    )
    provenance = {
        "scores": file_identity(FLAGS.scores),
        "dataset": source.name,
        "data_dir": None if FLAGS.data_dir is None else os.path.abspath(FLAGS.data_dir),
        "split": FLAGS.split,
        "order": "tfds",
        "labels_checked": published.labels is not None,
    }
    write_npz_atomic(
        FLAGS.output,
        {
            "scores": scores,
            "labels": tfds_labels,
            "original_index": mapping.b_to_a,
            "provenance": json.dumps(provenance),
        },
    )
    checked = "labels checked" if published.labels is not None else "no labels to check"
    print(
        f"wrote {len(scores)} scores in {source.name} {FLAGS.split} order to "
        f"{FLAGS.output} ({checked}; {mapping.num_ambiguous} examples in duplicate groups)"
    )
    return app.EXIT_OK


def run() -> None:
    """The console entry point."""
    define_flags()
    app.run_command(main, name=NAME)
