"""Brings a published per-example score file from the original order into TFDS order.

  python tools/map_order.py --scores=../shared/data/cifar10-cscores-orig-order.npz \
      --dataset=cifar10 --data_dir=~/tensorflow_datasets --output=cifar10-cscores-tfds.npz

The released checkpoints' `index_*` arrays are TFDS positions, while the published
C-scores are in the original CIFAR order. The mapping comes from CIFAR's `id` feature, or
for MNIST-like data from matching images against the IDX files (--idx_dir). When the score
file carries `labels`, they are checked against the TFDS labels after the move. Output
keys: `scores`, `labels` (TFDS order) and `original_index` (original position of each
TFDS example).
"""

from __future__ import annotations

import sys

from absl import app, flags

from heldout.atomic import write_npz_atomic
from heldout.datasets.base import DatasetError
from heldout.datasets.order import load_published_scores, permute_scores
from heldout.datasets.tfds_source import TfdsSource, original_to_tfds_mapping

FLAGS = flags.FLAGS
flags.DEFINE_string("scores", None, "Published score file (.npz with scores[, labels], or .npy).")
flags.DEFINE_string("dataset", None, "TFDS name: cifar10, cifar100, mnist, fashion_mnist.")
flags.DEFINE_string("data_dir", None, "Prepared TFDS data_dir (default: TFDS's default).")
flags.DEFINE_string("idx_dir", None, "Original IDX files for MNIST-like data.")
flags.DEFINE_string("split", "train", "Split the scores belong to.")
flags.DEFINE_string("output", None, "Where to write the .npz in TFDS order.")
flags.mark_flags_as_required(["scores", "dataset", "output"])


def main(argv):
    del argv
    try:
        published = load_published_scores(FLAGS.scores)
        source = TfdsSource(FLAGS.dataset, FLAGS.data_dir)
        mapping = original_to_tfds_mapping(source, FLAGS.split, FLAGS.idx_dir)
        tfds_labels = source.load_arrays(FLAGS.split).labels
        scores = permute_scores(
            published.scores,
            mapping,
            published.labels,
            None if published.labels is None else tfds_labels,
        )
        write_npz_atomic(
            FLAGS.output,
            {"scores": scores, "labels": tfds_labels, "original_index": mapping.b_to_a},
        )
    except (DatasetError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    checked = "labels checked" if published.labels is not None else "no labels to check"
    print(
        f"wrote {len(scores)} scores in {source.name} {FLAGS.split} order to "
        f"{FLAGS.output} ({checked}; {mapping.num_ambiguous} examples in duplicate groups)"
    )
    return 0


if __name__ == "__main__":
    app.run(main)
