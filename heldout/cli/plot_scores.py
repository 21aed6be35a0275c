"""`tools/plot_scores.py`: the figures of a scores file, as PDF and PNG.

Writes examples (per class, the 10 highest and 10 lowest C-score training images),
histograms (C-score per subset ratio), cscore_bins (mean C-score per bin of integral
C-score against subset ratio), when the scores hold intervals (`compute_scores.py
--confidence`) cscore_bands (per class, examples sorted by C-score with their interval
as a band), when the scores hold influence, influence (test images with their most
influential training images) and, with --plan (the JSON of `plan_runs.py --output`),
reliability (split-half ranking reliability against runs per ratio, measured and
predicted). The images come from the experiment's
recorded dataset (with its corrupted labels, if it was trained on any), or from --dataset
and --data_dir. Each file is written under a temporary name and renamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
    flags.DEFINE_string(
        "plan",
        None,
        "A run plan (the JSON `tools/plan_runs.py --output` writes): also draw reliability "
        "against runs per ratio.",
    )


def main(argv: Sequence[str]) -> int:
    del argv
    import heldout.plots as plots
    from heldout.datasets import get_source, relabeled
    from heldout.errors import UsageError
    from heldout.release import layout as release

    formats = plots.check_formats(FLAGS.formats)  # before anything slow
    scores = plots.load_scores(FLAGS.scores)
    plan = load_plan(FLAGS.plan) if FLAGS.plan else None
    if FLAGS.experiment_dir:
        experiment = release.open_experiment(FLAGS.experiment_dir)
        source = relabeled.experiment_source(experiment, FLAGS.dataset, FLAGS.data_dir)
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
    if plan is not None:
        from heldout.plots.uncertainty import plot_reliability_curve

        figure = plot_reliability_curve(plan)
        written += plots.save_figure(figure, Path(FLAGS.output_dir) / "reliability", formats)
    for path in written:
        print(path)
    return app.EXIT_OK


def load_plan(path: str) -> dict:
    """A `plan_runs.py --output` JSON file, checked for what the figure reads.

    Raises:
      UsageError: the file is missing, not JSON, or not a run plan; the message names it.
    """
    import json

    from heldout.errors import UsageError

    try:
        with open(path, encoding="utf-8") as f:
            plan = json.load(f)
    except OSError as error:
        raise UsageError(f"{path}: cannot read the run plan: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not a JSON run plan ({error})") from None
    needed = ("runs_per_ratio", "predicted_rho", "spearman_brown_rho", "measured_rho")
    if (
        not isinstance(plan, dict)
        or not isinstance(plan.get("scores"), list)
        or not all(isinstance(s, dict) and all(k in s for k in needed) for s in plan["scores"])
    ):
        raise UsageError(
            f"{path}: not a run plan (expected the JSON of tools/plan_runs.py --output, "
            "with a 'scores' list)"
        )
    return plan


def run() -> None:
    """The console entry point."""
    define_flags()
    app.run_command(main, name=NAME)
