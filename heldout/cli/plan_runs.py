"""`heldout plan-runs`: how reliable each score's ranking is now, and how many runs per
ratio a target reliability needs, from the aux arrays alone.

Prints the measured split-half reliability, the prediction at 2x, 4x and 8x the runs and
the runs for --target_rho; --output writes it as JSON, --figure draws the curve.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags

FLAGS = flags.FLAGS
NAME = "plan_runs"
EXAMPLES = """\
  heldout plan-runs --experiment_dir=data/cifar10-inception --scores=cscore,memorization \\
      --target_rho=0.9 --output=plan.json --figure=plan.png"""


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    cli_flags.experiment_dir(__name__, required=True)
    cli_flags.scores(__name__, ["cscore", "memorization"], cli_flags.PLAN_SCORE_CHOICES)
    cli_flags.subset_ratio(
        __name__, "Of the memorization runs; default 0.7 when present, else the largest."
    )
    flags.DEFINE_float("target_rho", 0.9, "The split-half reliability to plan for.")
    flags.DEFINE_integer("repeats", 10, "Random splits into halves.", lower_bound=1)
    cli_flags.seed(__name__)
    cli_flags.output(__name__, "The plan as JSON.")
    cli_flags.figure(__name__, "Reliability against runs: a .png, .pdf or .svg file.")
    cli_flags.reading(__name__)  # --reader_threads, --skip_bad_runs, --progress


def _runs_text(ratios, runs) -> str:
    if len(set(runs)) == 1:
        return f"{runs[0]}"
    return ", ".join(f"{ratio:g}: {n}" for ratio, n in zip(ratios, runs, strict=True))


def _ceiling_lines(score) -> list[str]:
    """The limit of the curve, and the tied true values that explain it."""
    name = "C-score" if score.score == "cscore" else "memorization"
    lines = [f"    as runs grow without bound: rho -> {score.ceiling_rho:.3f}"]
    if score.tied_true_values:
        tied = ", ".join(
            f"{share:.1%} at exactly {value:g}" for value, share in score.tied_true_values.items()
        )
        lines.append(
            f"      tied true {name}s: {tied} (every run right or every run wrong: their "
            "estimates stay tied at every budget and share an average rank, which agrees "
            "between halves)"
        )
    if score.noise_tied_share > 0.001:
        lines.append(
            f"      {score.noise_tied_share:.1%} of examples share a true {name} that their "
            "estimates only approach: their order is noise at any budget, which is what "
            "holds the ceiling below 1"
        )
    for runs, rho, later, lower in score.falls:
        lines.append(
            f"    note: the predicted rho falls from {rho:.3f} at {runs} to {lower:.3f} at "
            f"{later} runs per ratio, more than the simulation's noise (a sign of examples "
            "tied in truth just inside 0 or 1, whose ties break at random as runs grow)"
        )
    return lines


def _target_lines(score) -> list[str]:
    target = f"rho = {score.target_rho:g}"
    if score.runs_for_target is not None:
        return [
            f"    runs per ratio for {target}: "
            f"{_runs_text(score.subset_ratios, list(score.runs_for_target))} "
            f"({score.multiplier_for_target:.3g}x; the smallest budget whose predicted rho "
            "stays at or above it at every larger budget checked)"
        ]
    if not score.ceiling_rho >= score.target_rho:
        return [f"    {target} is not reachable: ceiling rho = {score.ceiling_rho:.3f}"]
    largest = max(score.checked_rho) if score.checked_rho else 0
    reached = score.checked_rho.get(largest, float("nan"))
    return [
        f"    {target} is not reached within 1024x the runs (rho = {reached:.3f} at "
        f"{largest} runs per ratio; ceiling {score.ceiling_rho:.3f})"
    ]


def format_plan(plan) -> str:
    """The printed table: every number with the runs or examples behind it."""
    lines = [f"experiment {plan.experiment}: split-half reliability of each score's ranking"]
    if plan.skipped:
        lines.append(f"  skipped bad runs: {len(plan.skipped)}")
    for score in plan.scores:
        what = (
            f"integral C-score over {len(score.subset_ratios)} ratios"
            if score.score == "cscore"
            else f"memorization at {score.subset_ratios[0]:g}"
        )
        runs = list(score.runs_per_ratio)
        lines.append(f"  {score.score} ({what}; {score.num_examples} examples):")
        lines.append(f"    runs per ratio now: {_runs_text(score.subset_ratios, runs)}")
        lines.append(
            f"    measured: rho = {score.measured_rho:.3f} +- {score.measured_rho_sd:.3f} "
            f"(two halves of ~{max(runs) // 2} runs per ratio, {score.repeats} random splits)"
        )
        for m in (2.0, 4.0, 8.0):
            lines.append(
                f"    predicted at {m:g}x ({int(m * max(runs))} runs per ratio): "
                f"rho = {score.predicted_rho[m]:.3f}   "
                f"(Spearman-Brown: {score.spearman_brown_rho[m]:.3f})"
            )
        lines.extend(_ceiling_lines(score))
        lines.extend(_target_lines(score))
    lines.append(
        "  (rho at R runs per ratio: Spearman between the scores of two disjoint halves of "
        "R / 2 runs each; the prediction at 2x is also how well the scores of all current "
        "runs would agree with an independent repetition of as many runs)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    del argv
    from heldout._core import atomic
    from heldout.errors import UsageError
    from heldout.release import layout as release
    from heldout.scores.uncertainty import plan_runs

    refuse_output_over_inputs([FLAGS.output, FLAGS.figure], input_trees=[FLAGS.experiment_dir])
    if FLAGS.output:
        atomic.probe_writable(FLAGS.output)
    if FLAGS.figure:
        from heldout.plots.canvas import SUFFIX_FORMATS as FORMATS

        if FLAGS.figure.rsplit(".", 1)[-1].lower() not in FORMATS:
            raise UsageError(f"--figure must end with .png, .pdf or .svg, got {FLAGS.figure}")
        atomic.probe_writable(FLAGS.figure)
    experiment = release.open_experiment(FLAGS.experiment_dir)
    plan = plan_runs(
        experiment,
        scores=FLAGS.scores,
        subset_ratio=FLAGS.subset_ratio,
        repeats=FLAGS.repeats,
        target_rho=FLAGS.target_rho,
        seed=FLAGS.seed,
        workers=FLAGS.reader_threads,
        skip_bad_runs=FLAGS.skip_bad_runs,
        on_bad_run=lambda run, error: print(f"skipping bad run: {error}", file=sys.stderr),
        progress=FLAGS.progress,
    )
    print(format_plan(plan))
    if FLAGS.output:
        atomic.write_json_atomic(FLAGS.output, plan.to_json())
        print(f"plan written to {FLAGS.output}")
    if FLAGS.figure:
        from heldout.plots import plot_reliability_curve, save_figure

        (path,) = save_figure(plot_reliability_curve(plan), FLAGS.figure)
        print(f"figure written to {path}")
    return app.EXIT_OK


def run() -> None:
    """The `heldout plan-runs` command."""
    define_flags()
    app.run_command(main, name=NAME)
