"""`heldout table`: a scores file as a CSV table, one row per training example.

Index (in the release's order, and in the original order on request), label, C-score and
memorization with their intervals and counts, and proxies: what a researcher opens in any
spreadsheet or data-frame tool. The table is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags

FLAGS = flags.FLAGS
NAME = "table"
EXAMPLES = """\
  heldout table --scores_file=scores.npz --output=scores.csv
  heldout table --scores_file=scores.npz --output=scores.csv \\
      --experiment_dir=data/cifar10-inception --proxies_file=proxies.npz
  heldout table --scores_file=scores.npz --output=scores.csv --original_order \\
      --dataset=cifar10 --data_dir=~/tensorflow_datasets"""


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    cli_flags.scores_file(__name__, required=True)
    cli_flags.output(__name__, "Must end with .csv.", required=True)
    cli_flags.experiment_dir(
        __name__, "Optional: its data gives the label column (the labels trained on)."
    )
    cli_flags.data(__name__, "Optional: the data of the label column or of --original_order.")
    cli_flags.labels(__name__)
    flags.DEFINE_boolean(
        "original_order",
        False,
        "Add original_index, each example's position in the dataset's original order: "
        "needs --dataset (a TFDS name) and --data_dir (CIFAR's id feature; MNIST-like data "
        "matched against --idx_dir).",
    )
    cli_flags.define(
        __name__,
        cli_flags.DEFINE_path,
        "idx_dir",
        None,
        "Original IDX files for --original_order on MNIST-like data.",
    )
    cli_flags.define(
        __name__,
        cli_flags.DEFINE_path,
        "proxies_file",
        None,
        "Optional: a `heldout proxies` .npz; each proxy becomes a column proxy_<name>.",
    )


def _labels() -> np.ndarray | None:
    """The label column: from --labels, else from the experiment's (or --dataset's) data."""
    from heldout._core.npz import load_npz
    from heldout.errors import UsageError

    if FLAGS.labels:
        arrays = load_npz(FLAGS.labels, error=UsageError, what="an .npz of labels")
        key = next((k for k in ("labels", "tr_labels") if k in arrays), None)
        if key is None:
            raise UsageError(
                f"{FLAGS.labels}: no `labels` or `tr_labels` (it has {sorted(arrays)})"
            )
        return arrays[key]
    if FLAGS.experiment_dir:
        from heldout.datasets.relabeled import experiment_source
        from heldout.release.layout import open_experiment

        experiment = open_experiment(FLAGS.experiment_dir)
        return (
            experiment_source(experiment, FLAGS.dataset, FLAGS.data_dir).load_arrays("train").labels
        )
    if FLAGS.dataset:
        from heldout.datasets import get_source

        return get_source(FLAGS.dataset, FLAGS.data_dir).load_arrays("train").labels
    return None


def _original_index() -> np.ndarray | None:
    if not FLAGS.original_order:
        return None
    from heldout.datasets.tfds_source import TfdsSource, original_to_tfds_mapping
    from heldout.errors import UsageError

    if not FLAGS.dataset:
        raise UsageError("--original_order needs --dataset (a TFDS name) and --data_dir")
    source = TfdsSource(FLAGS.dataset, FLAGS.data_dir)
    return original_to_tfds_mapping(source, "train", FLAGS.idx_dir).b_to_a


def main(argv: Sequence[str]) -> int:
    del argv
    from heldout._core import atomic
    from heldout._core.npz import load_npz
    from heldout.errors import UsageError
    from heldout.scores import table
    from heldout.scores.file import EXPERIMENT, load_scores

    if not FLAGS.output.endswith(".csv"):
        raise UsageError(f"--output must end with .csv, got {FLAGS.output}")
    refuse_output_over_inputs(
        [FLAGS.output],
        [FLAGS.scores_file, FLAGS.labels, FLAGS.proxies_file],
        [FLAGS.idx_dir],
        input_trees=[FLAGS.experiment_dir],
        data_dir=FLAGS.data_dir,
        dataset=FLAGS.dataset,
    )
    atomic.probe_writable(FLAGS.output)
    arrays = load_scores(FLAGS.scores_file)
    proxies = []
    if FLAGS.proxies_file:
        size = len(table.score_table(arrays)[0].values)
        found = load_npz(FLAGS.proxies_file, error=UsageError, what="a proxies file (.npz)")
        proxies = table.proxy_columns(found, size)
    columns = table.score_table(arrays, _labels(), _original_index(), proxies)
    experiment = str(arrays[EXPERIMENT]) if EXPERIMENT in arrays else "an experiment"
    table.save_score_table(
        FLAGS.output, columns, title=f"heldout table of {FLAGS.scores_file} ({experiment})"
    )
    print(
        f"wrote {len(columns[0].values)} rows x {len(columns)} columns to {FLAGS.output}: "
        + ", ".join(column.name for column in columns)
    )
    return app.EXIT_OK


def run() -> None:
    """The `heldout table` command."""
    define_flags()
    app.run_command(main, name=NAME)
