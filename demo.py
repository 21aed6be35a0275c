"""Rebuild released models, restore their checkpoints, re-evaluate, and cross-check.

For each chosen run: build the model, restore its final checkpoint, predict the dataset,
and compare the correctness of every example with the run's `aux_arrays.npz`.

    python demo.py --model_dir=<root>/cifar10-inception/0.7/0 --data_dir=~/tensorflow_datasets
    python demo.py --experiment_dir=<root>/cifar100-inception --subset_ratio=0.7 --max_runs=3
    python demo.py                  # the project's embedded default experiment, if built

Exit status: 0 when the predictions match (all of them, or at least --min_match of them),
1 when they do not, 2 when the runs could not be evaluated (bad flags, missing or
mismatching checkpoint, missing data).
"""

from __future__ import annotations

import sys

from absl import app, flags

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "A run folder <experiment>/<subset_ratio>/<run_id>.")
flags.DEFINE_string("experiment_dir", None, "An experiment folder (use with --subset_ratio).")
flags.DEFINE_float(
    "subset_ratio",
    None,
    "Subset ratio of the runs to check (default: the smallest ratio that has checkpoints).",
)
flags.DEFINE_integer("run_id", None, "Check only this run (with --experiment_dir).")
flags.DEFINE_integer("max_runs", 1, "Check at most this many runs of the subset ratio.")
flags.DEFINE_string(
    "dataset",
    None,
    "Data source (heldout.datasets names: cifar10, cifar100, mnist, "
    "fashion_mnist, fashion_mnist_idx, mnist_idx, npz, imagenet). Default: the experiment's.",
)
flags.DEFINE_string("data_dir", None, "TFDS data_dir, IDX folder, .npz file or TFRecord folder.")
flags.DEFINE_enum("split", "all", ["train", "test", "all"], "Which splits to re-evaluate.")
flags.DEFINE_integer("batch_size", 500, "Images per evaluation step.")
flags.DEFINE_string("arch", None, "Override the architecture: small_inception, resnet50, mlp.")
flags.DEFINE_integer("num_classes", None, "Override the number of classes.")
flags.DEFINE_float("min_match", 1.0, "Fraction of predictions that must match for exit status 0.")

_SHOW_MISMATCHES = 10


class UsageError(Exception):
    """Bad or missing flags: printed without a traceback, exit status 2."""


def _choose_runs(release):
    """(experiment meta, runs to check) from the flags."""
    if FLAGS.model_dir and FLAGS.experiment_dir:
        raise UsageError("pass either --model_dir or --experiment_dir, not both")
    if FLAGS.max_runs < 1:
        raise UsageError(f"--max_runs must be at least 1, got {FLAGS.max_runs}")
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
    return experiment.meta, runs[: FLAGS.max_runs]


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
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    # Imported here so that --help answers without loading TensorFlow.
    from heldout import evaluation, label_noise, release

    if not 0.0 <= FLAGS.min_match <= 1.0:
        print("error: --min_match must be a fraction in [0, 1]", file=sys.stderr)
        return 2
    splits = ["train", "test"] if FLAGS.split == "all" else [FLAGS.split]
    matches = total = 0
    try:
        meta, runs = _choose_runs(release)
        # The labels the runs were trained and scored on (corrupted ones where recorded).
        source = label_noise.experiment_source(
            runs[0].experiment_dir, FLAGS.dataset, FLAGS.data_dir
        )
        for run in runs:
            check = evaluation.check_run(
                run,
                source,
                splits=splits,
                arch=FLAGS.arch,
                num_classes=FLAGS.num_classes,
                meta=meta,
                batch_size=FLAGS.batch_size,
            )
            _print_run(check, source.name)
            matches += check.matches
            total += check.total
    except (UsageError, ValueError, OSError) as e:
        # CheckpointError, DatasetError, AuxArraysError, ReleaseLayoutError are ValueErrors
        # whose messages say what is wrong and where.
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(runs) > 1:
        print(f"All {len(runs)} runs: {matches} out of {total} predictions match")
    fraction = matches / total if total else 0.0
    if matches == total and total:
        return 0
    if FLAGS.min_match < 1.0 and fraction >= FLAGS.min_match:
        print(f"{100 * fraction:.3f}% match, at least --min_match={FLAGS.min_match:g}")
        return 0
    print(
        f"MISMATCH: {total - matches} of {total} predictions differ from the stored "
        f"correctness ({100 * fraction:.3f}% match)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    app.run(main)
