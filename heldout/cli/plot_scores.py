"""`tools/plot_scores.py`: the figures of a scores file, as PDF and PNG.

Writes examples (per class, the 10 highest and 10 lowest C-score training images),
histograms (C-score per subset ratio), cscore_bins (mean C-score per bin of integral
C-score against subset ratio) and, when the scores hold influence, influence (test images
with their most influential training images). The images come from the experiment's
recorded dataset (with its corrupted labels, if it was trained on any), or from --dataset
and --data_dir. Each file is written under a temporary name and renamed.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from heldout.cli import app

FLAGS = flags.FLAGS
NAME = "plot_scores"


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    flags.DEFINE_string("scores", None, "The scores .npz file.", required=True)
    flags.DEFINE_string(
        "experiment_dir",
        None,
        "The experiment the scores come from: its dataset, data_dir and label corruption "
        "are used to load the images and labels.",
    )
    flags.DEFINE_string(
        "dataset", None, "Data source name (heldout.datasets), overriding the experiment's."
    )
    flags.DEFINE_string("data_dir", None, "Data folder, overriding the experiment's.")
    flags.DEFINE_string("output_dir", None, "Where to write the figures.", required=True)
    flags.DEFINE_list("formats", ["pdf", "png"], "File formats to write.")


def main(argv: Sequence[str]) -> int:
    del argv
    from heldout import plots, release
    from heldout.datasets import get_source
    from heldout.errors import UsageError
    from heldout.training import label_noise

    formats = plots.check_formats(FLAGS.formats)  # before anything slow
    scores = plots.load_scores(FLAGS.scores)
    if FLAGS.experiment_dir:
        experiment = release.open_experiment(FLAGS.experiment_dir)
        source = label_noise.experiment_source(experiment, FLAGS.dataset, FLAGS.data_dir)
    elif FLAGS.dataset:
        source = get_source(FLAGS.dataset, FLAGS.data_dir)
    else:
        raise UsageError("give --experiment_dir, or --dataset (and --data_dir)")
    train = source.load_arrays("train")
    test = source.load_arrays("test") if "test" in source.splits else None
    written = plots.write_figures(
        scores,
        train.images,
        train.labels,
        FLAGS.output_dir,
        test_images=None if test is None else test.images,
        test_labels=None if test is None else test.labels,
        class_names=plots.class_names_for(source.name, source.num_classes),
        formats=formats,
    )
    for path in written:
        print(path)
    return app.EXIT_OK


def run() -> None:
    """The console entry point."""
    define_flags()
    app.run_command(main, name=NAME)
