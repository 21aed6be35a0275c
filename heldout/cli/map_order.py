"""`heldout map-order`: a published per-example score file, moved into TFDS order.

The released runs index TFDS positions; the published C-scores are in the original CIFAR
order. The mapping comes from CIFAR's `id` feature, or for MNIST-like data from the IDX
files (--idx_dir); labels in the file are checked after the move.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags

FLAGS = flags.FLAGS
NAME = "map_order"
EXAMPLES = """\
  heldout map-order --scores_file=cifar10-cscores-orig-order.npz --dataset=cifar10 \\
      --data_dir=~/tensorflow_datasets --output=cifar10-cscores-tfds.npz"""


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    cli_flags.scores_file(
        __name__, "Here a published score file (.npz with scores[, labels], or .npy).", True
    )
    cli_flags.data(__name__, "Here a TFDS dataset: cifar10, cifar100, mnist, fashion_mnist.")
    cli_flags.define(
        __name__, cli_flags.DEFINE_path, "idx_dir", None, "Original IDX files for MNIST-like data."
    )
    flags.DEFINE_string("split", "train", "Split the scores belong to.")
    cli_flags.output(__name__, "The .npz in TFDS order.", required=True)
    flags.mark_flag_as_required("dataset")


def main(argv: Sequence[str]) -> int:
    del argv
    from heldout._core.atomic import write_npz_atomic
    from heldout._core.provenance import file_identity
    from heldout.datasets.order import permute_scores
    from heldout.datasets.tfds_source import TfdsSource, original_to_tfds_mapping
    from heldout.published.cscores import load_cscores

    refuse_output_over_inputs(
        [FLAGS.output],
        [FLAGS.scores_file],
        [FLAGS.idx_dir],
        data_dir=FLAGS.data_dir,
        dataset=FLAGS.dataset,
    )
    published = load_cscores(FLAGS.scores_file)
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
        "scores": file_identity(FLAGS.scores_file),
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
    """The `heldout map-order` command."""
    define_flags()
    app.run_command(main, name=NAME)
