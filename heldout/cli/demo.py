"""`heldout demo` (`demo.py`): restore runs, re-evaluate them, cross-check every prediction.

Each run's final checkpoint is restored into one model, the dataset predicted, and every
example's correctness compared with the run's `aux_arrays.npz`. Exit status 0 when the
predictions match (all, or --min_match of them), 1 when not, 2 when they cannot be checked.
"""

from __future__ import annotations

import sys

from absl import flags

from heldout.cli import app, options
from heldout.cli import flags as cli_flags
from heldout.errors import UsageError

EXAMPLES = """\
  heldout demo                 # a run of the embedded default experiment, if built
  heldout demo --model_dir=data/cifar10-inception/0.7/0 --data_dir=~/tensorflow_datasets
  heldout demo --experiment_dir=data/cifar100-inception --subset_ratio=0.7 --max_runs=3"""

FLAGS = flags.FLAGS

cli_flags.model_dir(__name__)
flags.DEFINE_integer("run_id", None, "Check only this run (with --experiment_dir).")
cli_flags.evaluation(__name__)

NAME = "demo.py"
_SHOW_MISMATCHES = 10


def _choose_runs(release):
    """(experiment meta, runs to check) from the flags."""
    if FLAGS.model_dir and FLAGS.experiment_dir:
        raise UsageError("pass either --model_dir or --experiment_dir, not both")
    if FLAGS.model_dir:
        if FLAGS.run_id is not None or FLAGS.subset_ratio is not None:
            raise UsageError("--run_id and --subset_ratio go with --experiment_dir")
        run = release.open_run(FLAGS.model_dir)
        return release.read_experiment_meta(run.experiment_dir), [run]

    experiment_dir = FLAGS.experiment_dir
    if experiment_dir is None:
        experiment_dir = release.default_experiment_dir()
        if not experiment_dir.is_dir():
            raise UsageError(
                f"no run given and the default experiment has not been built "
                f"({experiment_dir} does not exist). Build it first (see README.md), "
                "or pass --model_dir=<run folder> or --experiment_dir=<experiment folder>."
            )
        print(f"Using the default experiment {experiment_dir}")
    experiment = release.open_experiment(experiment_dir)
    with_ckpt = [run for run in experiment.runs if run.has_checkpoint]
    if not with_ckpt:
        raise UsageError(f"{experiment.path}: no run has a checkpoints/ folder to restore")
    ratio = FLAGS.subset_ratio
    if ratio is None:
        ratio = min(run.subset_ratio for run in with_ckpt)
    if FLAGS.run_id is not None:
        return experiment.meta, [experiment.run(ratio, FLAGS.run_id)]
    runs = [run for run in experiment.runs_at(ratio) if run.has_checkpoint]
    if not runs:
        ratios = sorted({run.subset_ratio for run in with_ckpt})
        raise UsageError(
            f"{experiment.path}: no run with a checkpoint at subset ratio {ratio} "
            f"(ratios with checkpoints: {ratios})"
        )
    return experiment.meta, runs[: FLAGS.max_runs or 1]


def _print_run(check, source_name: str) -> None:
    info, aux = check.restore, check.aux
    print(f"Run {check.run_path}")
    print(f"  checkpoint {info.path.name}: epoch {info.epoch}, global step {info.global_step}")
    trained = aux.index_train.size
    print(
        f"  subset ratio {check.subset_ratio:g}: trained on {100 * check.subset_ratio:g}% "
        f"of the training set ({trained} of {aux.num_train} examples, "
        f"{100 * trained / max(aux.num_train, 1):.1f}%)"
    )
    print(f"  model {check.arch} ({check.num_classes} classes), data {source_name}")
    accuracies = ", ".join(
        f"{split} split {100 * r.accuracy:.2f}% ({r.num_examples} examples)"
        for split, r in check.results.items()
    )
    print(f"  accuracy: {accuracies}")
    labels = {"train": "train (trained on)", "removed": "removed (held out)", "test": "test"}
    for name, c in check.checks.items():
        line = (
            f"  {labels.get(name, name)}: {c.matches} out of {c.total} predictions match, "
            f"accuracy {100 * c.accuracy:.2f}%"
        )
        if c.not_evaluated:
            line += f"; {c.not_evaluated} not evaluated"
        print(line)
        if c.mismatched_indices.size:
            shown = ", ".join(str(i) for i in c.mismatched_indices[:_SHOW_MISMATCHES])
            more = " ..." if c.mismatched_indices.size > _SHOW_MISMATCHES else ""
            print(f"    mismatching {name} indices: {shown}{more}")
    print(f"  {check.matches} out of {check.total} predictions match")


def main(argv) -> int:
    """Checks the runs the flags choose; see the module docstring for the exit status."""
    del argv
    options.check_evaluation_flags()
    # Imported here so that --help answers without loading TensorFlow.
    from heldout.datasets import relabeled
    from heldout.evaluation import evaluate as evaluation
    from heldout.release import layout as release

    evaluation_options = options.evaluation_options()
    meta, runs = _choose_runs(release)
    # The labels the runs were trained and scored on (corrupted ones where recorded).
    source = relabeled.experiment_source(
        runs[0].experiment_dir, evaluation_options.dataset, evaluation_options.data_dir
    )
    cache = evaluation.ModelCache()  # one model for all runs: restored, not rebuilt
    matches = total = 0
    for run in runs:
        check = evaluation_options.check_run(run, source, meta, cache=cache)
        _print_run(check, source.name)
        matches += check.matches
        total += check.total
    if len(runs) > 1:
        print(f"All {len(runs)} runs: {matches} out of {total} predictions match")
    verdict = options.match_verdict(matches, total)
    if verdict.message:
        print(verdict.message, file=sys.stdout if verdict.status == app.EXIT_OK else sys.stderr)
    return verdict.status


def run() -> None:
    """The `heldout demo` command (and `demo.py`)."""
    app.run_command(main, name=NAME)
