"""`heldout analyze`: the papers' per-class analyses of C-scores, and their figures.

Per-class mean and SD with the most and least regular classes and r(class mean, class
SD); figures class_statistics, cscore_histogram, cscore_bins and examples. Works on our
scores files (--key) and on the published C-score files; a file that records another
dataset or order than --dataset/--experiment_dir is refused (unless --allow_mismatch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags

FLAGS = flags.FLAGS
NAME = "analyze_scores"
EXAMPLES = """\
  # the published CIFAR-10 C-scores (labels are in the file):
  heldout analyze --scores_file=cifar10-cscores-orig-order.npz --output_dir=analysis
  # our scores, with the experiment's images for the examples figure:
  heldout analyze --scores_file=scores.npz --experiment_dir=data/cifar10-inception \\
      --data_dir=~/tensorflow_datasets --output_dir=analysis"""


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    cli_flags.scores_file(__name__, "Or a published C-score file (.npz/.npy).", required=True)
    cli_flags.key(__name__)
    cli_flags.allow_pickle(__name__)
    cli_flags.experiment_dir(__name__, "Its dataset gives the labels and images.")
    cli_flags.data(__name__, "Default: the experiment's.")
    cli_flags.output_dir(__name__, "The figures (none when not given).")
    cli_flags.figures(__name__)
    flags.DEFINE_integer("top", 5, "Classes listed at each end of the table.")
    cli_flags.allow_mismatch(__name__)


def _scores_and_labels(path: str):
    """(scores, labels or None, cscore_by_ratio or None, subset_ratios or None, identity
    or None: which dataset and order the file records)."""
    import heldout.published as published
    from heldout._core.npz import load_npz
    from heldout.errors import ScoresFileError
    from heldout.published.format import member_names
    from heldout.published.identity import (
        identity_from_provenance,
        identity_of_published,
        identity_of_scores,
    )
    from heldout.scores.file import check_score_values

    names = member_names(path)  # which format, before loading
    if path.endswith(".npy") or "scores" in names:
        record = published.load_cscores(path, allow_pickle=FLAGS.allow_pickle)
        identity = identity_from_provenance(record.provenance, path) or identity_of_published(
            path, record.scores.shape
        )
        return record.scores, record.labels, None, None, identity
    arrays = load_npz(path, keys=[FLAGS.key], error=ScoresFileError, what="a scores .npz file")
    check_score_values(arrays, path)  # infinite or impossible estimates, named
    by_ratio = arrays.get("cscore_by_ratio") if FLAGS.key == "cscore" else None
    identity = identity_of_scores(arrays, path)
    return arrays[FLAGS.key], None, by_ratio, arrays.get("subset_ratios"), identity


def _source_identity():
    """Which dataset and order --dataset or --experiment_dir name (before any data is read)."""
    from heldout.published.identity import identity_of_dataset_flag, identity_of_experiment
    from heldout.release import layout as release

    if FLAGS.dataset:
        return identity_of_dataset_flag(FLAGS.dataset)
    if FLAGS.experiment_dir:
        meta = release.open_experiment(FLAGS.experiment_dir).meta
        return identity_of_experiment(meta, FLAGS.experiment_dir)
    return None


def _source():
    from heldout.datasets import get_source, relabeled
    from heldout.release import layout as release

    if FLAGS.experiment_dir:
        experiment = release.open_experiment(FLAGS.experiment_dir)
        return relabeled.experiment_source(experiment, FLAGS.dataset, FLAGS.data_dir)
    if FLAGS.dataset:
        return get_source(FLAGS.dataset, FLAGS.data_dir)
    return None


def _table(stats, names: list[str], top: int) -> list[str]:
    order = stats.ranked()
    rows = []
    for title, picks in (
        ("most regular classes (highest mean C-score)", order[:top]),
        ("least regular classes (lowest mean C-score)", order[::-1][:top]),
    ):
        rows.append(title + ":")
        rows.append(f"  {'class':<24} {'examples':>8} {'mean':>7} {'SD':>7}")
        for k in picks:
            name = names[int(stats.labels[k])]
            rows.append(
                f"  {name:<24} {int(stats.counts[k]):>8} {stats.mean[k]:>7.4f} {stats.std[k]:>7.4f}"
            )
    return rows


def main(argv: Sequence[str]) -> int:
    del argv
    import heldout.plots as plots
    from heldout.errors import DatasetError, UsageError
    from heldout.published import analysis
    from heldout.published.identity import check_same_data

    formats = plots.check_formats(FLAGS.formats) if FLAGS.output_dir else None
    refuse_output_over_inputs(
        [FLAGS.output_dir],
        [FLAGS.scores_file],
        input_trees=[FLAGS.experiment_dir],
        data_dir=FLAGS.data_dir,
        dataset=FLAGS.dataset,
    )
    if FLAGS.top < 1:
        raise UsageError(f"--top must be at least 1, got {FLAGS.top}")
    scores, labels, by_ratio, ratios, identity = _scores_and_labels(FLAGS.scores_file)
    mismatch = check_same_data(identity, _source_identity(), FLAGS.allow_mismatch)
    if mismatch is not None:
        print(f"--allow_mismatch given: {mismatch}")
    source = _source()
    train = source.load_arrays("train") if source is not None else None
    if train is not None:
        if len(train.labels) != len(scores):
            raise DatasetError(
                f"{FLAGS.scores_file}: {len(scores)} scores, but {source.name} has "
                f"{len(train.labels)} training examples: another dataset?"
            )
        if labels is not None and not np.array_equal(labels, train.labels):
            wrong = int(np.count_nonzero(labels != train.labels))
            raise DatasetError(
                f"{FLAGS.scores_file}: its labels disagree with {source.name}'s for {wrong} of "
                f"{len(labels)} examples: the file is in another order than the dataset "
                "(published CIFAR files are in the original order; see tools/map_order.py)"
            )
        labels = train.labels
    if labels is None:
        raise UsageError(
            f"{FLAGS.scores_file} has no labels: give --dataset/--data_dir or --experiment_dir"
        )
    stats = analysis.class_statistics(scores, labels, FLAGS.scores_file)
    dataset_name = source.name if source is not None else FLAGS.scores_file.split("/")[-1]
    names = plots.class_names_for(dataset_name, int(stats.labels.max()) + 1)
    print(
        f"{FLAGS.scores_file}: {stats.num_examples} examples with a score ({stats.num_undefined} "
        f"undefined) in {len(stats.labels)} classes"
    )
    print(
        f"r(class mean, class SD) = {stats.mean_std_correlation:.3f} over "
        f"{len(stats.labels)} classes ({stats.num_examples} examples)"
    )
    print("\n".join(_table(stats, names, FLAGS.top)))
    if not FLAGS.output_dir:
        return app.EXIT_OK
    figures = {
        "class_statistics": plots.plot_class_statistics(
            stats.labels, stats.mean, stats.std, stats.counts, names
        ),
        "cscore_histogram": plots.plot_cscore_histogram(scores),
    }
    from heldout.plots.captions import runs_of_scores_file

    runs = runs_of_scores_file(FLAGS.scores_file)
    if by_ratio is not None and ratios is not None:
        figures["cscore_bins"] = plots.plot_cscore_bins(ratios, by_ratio, scores, runs=runs)
    if train is not None:
        figures["examples"] = plots.plot_examples(scores, train.images, labels, names, runs=runs)
    for name, figure in figures.items():
        for path in plots.save_figure(figure, f"{FLAGS.output_dir}/{name}", formats):
            print(path)
    return app.EXIT_OK


def run() -> None:
    """The `heldout analyze` command."""
    define_flags()
    app.run_command(main, name=NAME)
