"""`heldout default`: the embedded default experiment, end to end: train, check, score, plot.

Builds MLPs on random subsets of Fashion-MNIST once (cached under $HELDOUT_HOME; an
interrupted build resumes), cross-checks one run, writes scores and figures, and ends
with the next commands to try. Expected errors and a mismatching cross-check exit 1.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout._core.write_safety import ensure_dir
from heldout.cli import app
from heldout.cli import flags as cli_flags
from heldout.errors import LockBusyError, TrainingError

EXAMPLES = """\
  heldout default                        # scores and figures into ./default_output
  heldout default --output_dir=~/heldout-default"""

FLAGS = flags.FLAGS
cli_flags.output_dir(__name__, "Scores and figures.", default="default_output")
cli_flags.experiment_dir(
    __name__, "Where the default experiment is built and cached (default: under $HELDOUT_HOME)."
)
flags.DEFINE_integer(
    "influence_topk", 50, "Most influential training examples kept per test example."
)


def _describe_plan(plan) -> str:
    if not plan.pending:
        return (
            f"[1/4] default experiment: cached at {plan.experiment_dir} ({len(plan.finished)} runs)"
        )
    return (
        f"[1/4] default experiment: training {len(plan.pending)} runs into "
        f"{plan.experiment_dir} ({len(plan.finished)} already there)"
    )


def _train(experiment_dir: Path) -> None:
    from heldout import training
    from heldout.cli.progress import TrainingProgress

    progress = TrainingProgress(
        every_epoch=False, run_lines=False, indent="  ", describe_plan=_describe_plan
    )
    with progress:
        result = training.train_experiment(training.default_config(), experiment_dir, progress)
    if result.diverged:  # the next steps need every run, and these are not finished
        raise TrainingError(
            f"{len(result.diverged)} runs of the default experiment diverged; first: "
            + result.diverged[0].describe()
        )
    if result.busy:
        # The next steps need every run: scoring a half-built experiment would mislead.
        raise LockBusyError(
            f"{experiment_dir}: {len(result.busy)} runs of the default experiment are being "
            "trained by another process; run this command again when it has finished"
        )


def _cross_check(experiment) -> bool:
    from heldout.datasets import relabeled
    from heldout.evaluation import evaluate as evaluation

    ratios = experiment.subset_ratios
    run = experiment.runs_at(ratios[len(ratios) // 2])[0]
    source = relabeled.experiment_source(experiment)
    check = evaluation.check_run(run, source, meta=experiment.meta)
    print(
        f"[2/4] demo cross-check of {run.path} (epoch {check.restore.epoch}, global step "
        f"{check.restore.global_step}, subset {100 * run.subset_ratio:g}%):"
    )
    for name, result in check.checks.items():
        print(
            f"      {name:8s} accuracy {result.accuracy:.4f}, {result.matches} out of "
            f"{result.total} predictions match"
        )
    print(f"      {check.matches} out of {check.total} predictions match")
    return check.all_match


def _scores(experiment, path: Path) -> dict:
    import numpy as np

    from heldout.scores.experiment import score_experiment
    from heldout.scores.file import save_scores
    from heldout.scores.request import ScoreRequest

    request = ScoreRequest(
        ("cscore", "memorization", "influence"), influence_topk=FLAGS.influence_topk
    )
    result = score_experiment(experiment, request)
    arrays = result.arrays()
    save_scores(path, arrays)
    cscore = arrays["cscore"]
    memorization = arrays["memorization"]
    print(f"[3/4] scores: {path}")
    print(
        f"      integral C-score: mean {np.nanmean(cscore):.3f} over "
        f"{np.count_nonzero(~np.isnan(cscore))} training examples; "
        f"{np.count_nonzero(cscore < 0.5)} below 0.5"
    )
    print(
        f"      memorization at {result.score_subset_ratio:g}: "
        f"{np.count_nonzero(memorization >= 0.25)} examples >= 0.25; influence: top "
        f"{FLAGS.influence_topk} per test example"
    )
    return arrays


def next_steps(experiment_dir: Path, output_dir: Path) -> str:
    """The commands to try next, on the experiment just built (paths shell-quoted)."""
    from shlex import quote

    experiment = quote(str(experiment_dir))
    return "\n".join(
        [
            "next steps:",
            f"  heldout demo --experiment_dir={experiment} --max_runs=3",
            f"  heldout scores --experiment_dir={experiment} "
            f"--output={quote(str(output_dir / 'all-scores.npz'))} "
            "--scores=cscore,memorization,influence_pairs --confidence=0.95",
            f"  heldout plan-runs --experiment_dir={experiment}",
            f"  heldout plot --scores_file={quote(str(output_dir / 'scores.npz'))} "
            f"--experiment_dir={experiment} --output_dir={quote(str(output_dir / 'figures'))}",
            f"  heldout evaluate --experiment_dir={experiment} "
            f"--output_dir={quote(str(output_dir / 'checks'))} --scheduler=none",
        ]
    )


def main(argv: Sequence[str]) -> int:
    """Runs the four steps; 0 when all ran and the cross-check matched N out of N."""
    del argv
    import heldout.plots as plots
    from heldout.datasets import relabeled
    from heldout.release import layout as release

    start = time.perf_counter()
    experiment_dir = Path(FLAGS.experiment_dir or release.default_experiment_dir())
    output_dir = Path(FLAGS.output_dir)
    refuse_output_over_inputs([output_dir], [], [experiment_dir])
    _train(experiment_dir)
    experiment = release.open_experiment(experiment_dir)
    matched = _cross_check(experiment)

    ensure_dir(output_dir)
    arrays = _scores(experiment, output_dir / "scores.npz")

    source = relabeled.experiment_source(experiment)
    train, test = source.load_arrays("train"), source.load_arrays("test")
    written = plots.write_figures(
        arrays,
        train.images,
        train.labels,
        output_dir / "figures",
        test_images=test.images,
        test_labels=test.labels,
        class_names=plots.class_names_for(source.name, source.num_classes),
        influence_evidence=plots.influence_evidence_for(arrays, experiment),
    )
    print(
        f"[4/4] figures: {', '.join(sorted({p.stem for p in written}))} "
        f"({', '.join(sorted({p.suffix[1:] for p in written}))}) in {output_dir / 'figures'}"
    )

    print(
        f"done in {time.perf_counter() - start:.0f} s. Experiment: {experiment_dir}; "
        f"scores: {output_dir / 'scores.npz'}; figures: {output_dir / 'figures'}"
    )
    print(next_steps(experiment_dir, output_dir))
    if not matched:
        app.print_error("run_default", "the cross-check found mismatching predictions")
        return app.EXIT_FAILED
    return app.EXIT_OK


def run() -> None:
    """The `heldout default` command."""
    app.run_command(main, name="run_default", error_status=app.EXIT_FAILED)
