"""`heldout plot`: the figures of a scores file, as PDF and PNG.

examples, histograms and cscore_bins always; cscore_bands with intervals, influence with
influence, reliability with --plan. The images come from the experiment's recorded
dataset (its corrupted labels included), or from --dataset and --data_dir.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags

FLAGS = flags.FLAGS
NAME = "plot_scores"
EXAMPLES = """\
  heldout plot --scores_file=/tmp/scores.npz \\
      --experiment_dir=~/.cache/heldout/experiments/fashion_mnist-mlp --output_dir=/tmp/figs"""


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    cli_flags.scores_file(__name__, required=True)
    cli_flags.experiment_dir(
        __name__, "The experiment the scores come from: its data and label corruption."
    )
    cli_flags.data(__name__, "Default: the experiment's.")
    cli_flags.output_dir(__name__, "The figures.", required=True)
    cli_flags.figures(__name__)
    cli_flags.define(
        __name__,
        cli_flags.DEFINE_path,
        "plan",
        None,
        "A run plan (the JSON `heldout plan-runs --output` writes): also draw reliability "
        "against runs per ratio.",
    )


def main(argv: Sequence[str]) -> int:
    del argv
    import heldout.plots as plots
    from heldout.datasets import get_source, relabeled
    from heldout.errors import UsageError
    from heldout.release import layout as release

    formats = plots.check_formats(FLAGS.formats)  # before anything slow
    refuse_output_over_inputs(
        [FLAGS.output_dir],
        [FLAGS.scores_file, FLAGS.plan],
        input_trees=[FLAGS.experiment_dir],
        data_dir=FLAGS.data_dir,
        dataset=FLAGS.dataset,
    )
    scores = plots.load_scores(FLAGS.scores_file)
    plan = load_plan(FLAGS.plan) if FLAGS.plan else None
    experiment = None
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
        influence_evidence=plots.influence_evidence_for(scores, experiment),
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
    """The `heldout plot` command."""
    define_flags()
    app.run_command(main, name=NAME)
