"""Re-evaluate and cross-check many runs of an experiment, fanned out over Dask.

  # every run with a checkpoint, on a local cluster of 4 worker processes:
  python tools/evaluate_runs.py --experiment_dir=<root>/cifar10-inception \
      --output_dir=checks/cifar10-inception --data_dir=~/tensorflow_datasets --workers=4
  # 100 runs of one ratio, in this process; rerun the same command to resume:
  python tools/evaluate_runs.py --experiment_dir=... --output_dir=... \
      --subset_ratio=0.7 --max_runs=100 --scheduler=none
  # on a running cluster (workers need `heldout` installed and the files in reach):
  python tools/evaluate_runs.py ... --scheduler=tcp://10.0.0.5:8786

One JSON record per run goes to <output_dir>/<ratio>/<run_id>.json; runs that have one are
skipped. A run that fails gets an error record (kept until --retry_errors).

Exit status: 0 when every run was checked and the predictions match (all of them, or at
least --min_match of them), 1 when some do not match or some runs failed, 2 on usage
errors (bad flags, no runs, unreachable scheduler).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS

flags.DEFINE_string("experiment_dir", None, "An experiment folder <root>/<experiment>.")
flags.DEFINE_string("output_dir", None, "Where the per-run JSON records go (resumable).")
flags.DEFINE_float("subset_ratio", None, "Only runs of this subset ratio (default: all).")
flags.DEFINE_integer("max_runs", None, "At most this many runs, by (ratio, run id).")
flags.DEFINE_string(
    "dataset",
    None,
    "Data source (heldout.datasets names: cifar10, cifar100, mnist, fashion_mnist, "
    "fashion_mnist_idx, mnist_idx, npz, imagenet). Default: the experiment's.",
)
flags.DEFINE_string("data_dir", None, "TFDS data_dir, IDX folder, .npz file or TFRecord folder.")
flags.DEFINE_enum("split", "all", ["train", "test", "all"], "Which splits to re-evaluate.")
flags.DEFINE_integer("batch_size", 500, "Images per evaluation step.")
flags.DEFINE_string("arch", None, "Override the architecture: small_inception, resnet50, mlp.")
flags.DEFINE_integer("num_classes", None, "Override the number of classes.")
flags.DEFINE_string(
    "scheduler",
    "local",
    "'local' (a local cluster of --workers processes), 'none' (this process, one run "
    "after another) or a Dask scheduler address such as tcp://host:8786.",
)
flags.DEFINE_integer("workers", 2, "Worker processes of the local cluster.")
flags.DEFINE_bool("retry_errors", False, "Evaluate runs with an error record again.")
flags.DEFINE_float("min_match", 1.0, "Fraction of predictions that must match for exit status 0.")
flags.mark_flags_as_required(["experiment_dir", "output_dir"])

_SHOW_PROBLEMS = 10


def _report(summary) -> None:
    """Error and mismatch lines (the first few of each), then the summary line."""
    failed = [r for r in summary.records if not r.ok]
    differ = [r for r in summary.records if r.ok and not r.all_match]
    for record in failed[:_SHOW_PROBLEMS]:
        print(f"error: {record.run_path}: {record.error}", file=sys.stderr)
    for record in differ[:_SHOW_PROBLEMS]:
        print(f"mismatch: {record.run_path}: {record.matches} out of {record.total} match")
    for problems, what in ((failed, "failed runs"), (differ, "mismatching runs")):
        if len(problems) > _SHOW_PROBLEMS:
            print(f"... {len(problems) - _SHOW_PROBLEMS} more {what}; see the records")
    print(
        f"{summary.matches} out of {summary.total} predictions match over "
        f"{summary.runs_checked} runs"
    )
    print(
        f"({summary.evaluated} evaluated now, {summary.skipped} from earlier records, "
        f"{summary.errors} errors; records in {summary.output_dir})"
    )


def main(argv) -> int:
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    if not 0.0 <= FLAGS.min_match <= 1.0:
        print("error: --min_match must be a fraction in [0, 1]", file=sys.stderr)
        return 2
    if FLAGS.workers < 1:
        print(f"error: --workers must be at least 1, got {FLAGS.workers}", file=sys.stderr)
        return 2
    # Dask logs every cluster event at INFO, which absl shows; the progress bar says enough.
    # Dask reads this when first imported (below), and its worker processes inherit it.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    from tqdm import tqdm

    from heldout import fanout

    options = fanout.EvalOptions(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        splits=("train", "test") if FLAGS.split == "all" else (FLAGS.split,),
        batch_size=FLAGS.batch_size,
        arch=FLAGS.arch,
        num_classes=FLAGS.num_classes,
    )
    try:
        fanout.check_scheduler(FLAGS.scheduler)
        runs = fanout.select_runs(FLAGS.experiment_dir, FLAGS.subset_ratio, FLAGS.max_runs)
        with tqdm(total=len(runs), unit="run", file=sys.stderr) as bar:

            def progress(record, reused):
                bar.update(1)
                if not record.ok:
                    bar.set_postfix_str(f"last error: run {record.run_id}")

            summary = fanout.evaluate_runs(
                runs,
                FLAGS.output_dir,
                options,
                scheduler=FLAGS.scheduler,
                n_workers=FLAGS.workers,
                retry_errors=FLAGS.retry_errors,
                progress=progress,
            )
    except (ValueError, OSError) as e:
        # ReleaseLayoutError is a ValueError; an unreachable scheduler an OSError.
        print(f"error: {e}", file=sys.stderr)
        return 2
    _report(summary)
    if summary.all_match:
        return 0
    if summary.errors == 0 and summary.total and summary.fraction >= FLAGS.min_match:
        print(f"{100 * summary.fraction:.3f}% match, at least --min_match={FLAGS.min_match:g}")
        return 0
    return 1


if __name__ == "__main__":
    app.run(main)
