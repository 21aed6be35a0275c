"""`heldout evaluate`: re-evaluate and cross-check many runs, fanned out over Dask.

One JSON record per run goes to `<output_dir>/<ratio>/<run_id>.json`; a rerun resumes,
re-evaluating only stale records. Exit status 0 when every run matches (all, or
--min_match), 1 when some do not or failed, 2 on usage errors.
"""

from __future__ import annotations

import sys

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app, options
from heldout.cli import flags as cli_flags
from heldout.errors import HeldoutError, UsageError

EXAMPLES = """\
  # every run with a checkpoint, on a local cluster of 4 worker processes:
  heldout evaluate --experiment_dir=data/cifar10-inception --output_dir=checks \\
      --data_dir=~/tensorflow_datasets --dask_workers=4
  # 100 runs of one ratio, in this process; rerun the same command to resume:
  heldout evaluate --experiment_dir=... --output_dir=... --subset_ratio=0.7 \\
      --max_runs=100 --scheduler=none
  # on a running cluster (workers need `heldout` installed and the files in reach):
  heldout evaluate ... --scheduler=tcp://10.0.0.5:8786"""

FLAGS = flags.FLAGS

cli_flags.evaluation(__name__)
cli_flags.output_dir(__name__, "The per-run JSON records (resumable).")
cli_flags.cluster(__name__, default_scheduler="local")  # --scheduler, --dask_workers
cli_flags.pack_outputs(__name__)
flags.DEFINE_bool("retry_errors", False, "Evaluate runs with an error record again.")
flags.DEFINE_list(
    "outputs",
    [],
    "Also write each run's outputs.npz: margins (logit and hinge margins) and optionally "
    "logits (float16, <= 100 classes), e.g. --outputs=margins,logits; and/or heldout_probs: "
    "heldout_probs.npz, the softmax on the examples the run held out (for heldout "
    "export-pred-probs). Only runs whose predictions match N out of N get them; needs "
    "--outputs_dir.",
)
flags.DEFINE_string(
    "outputs_dir",
    None,
    "Where --outputs go, in the release's layout (<ratio>/<run_id>/outputs.npz and "
    "heldout_probs.npz); never "
    "inside the experiment. A rerun skips runs whose outputs are current.",
)

NAME = "evaluate_runs"
_SHOW_PROBLEMS = 10


def _report(summary) -> None:
    """Error and mismatch lines (the first few of each), then the summary lines."""
    failed = [r for r in summary.records if not r.ok]
    differ = [r for r in summary.records if r.ok and not r.all_match]
    for record in failed[:_SHOW_PROBLEMS]:
        print(f"error: {record.run_path}: {record.error}", file=sys.stderr)
    bug = next((r for r in failed if r.traceback), None)
    if bug is not None:  # not an error the toolkit raises on purpose: show where it came from
        print(f"traceback of the error in {bug.run_path}:\n{bug.traceback}", file=sys.stderr)
    no_outputs = "; no outputs file written" if FLAGS.outputs else ""
    for record in differ[:_SHOW_PROBLEMS]:
        print(
            f"mismatch: {record.run_path}: {record.matches} out of {record.total} match{no_outputs}"
        )
    for problems, what in ((failed, "failed runs"), (differ, "mismatching runs")):
        if len(problems) > _SHOW_PROBLEMS:
            print(f"... {len(problems) - _SHOW_PROBLEMS} more {what}; see the records")
    print(
        f"{summary.matches} out of {summary.total} predictions match over "
        f"{summary.runs_checked} runs"
    )
    print(
        f"({summary.evaluated} evaluated now, of which {summary.stale} stale records "
        f"re-evaluated; {summary.skipped} from earlier records; {summary.errors} errors; "
        f"records in {summary.output_dir})"
    )


def _pack_outputs(runs) -> None:
    """Packs each evaluated ratio whose every run now has an outputs file (a current pack
    is kept); one line per ratio. A pack that cannot be written leaves the per-run files,
    which reads then use: said, not fatal."""
    from tqdm import tqdm

    from heldout.release import layout as release
    from heldout.release import outputs_pack

    experiment = release.open_experiment(FLAGS.experiment_dir)
    for ratio in sorted({run.subset_ratio for run in runs}):
        bar = None

        def progress(ratio=ratio):
            nonlocal bar
            if bar is None:
                total = len(list(experiment.runs_at(ratio)))
                bar = tqdm(total=total, unit="run", desc=f"packing {ratio:g}", file=sys.stderr)
            bar.update(1)

        try:
            update = outputs_pack.update_pack(
                experiment, ratio, FLAGS.outputs_dir, progress=progress
            )
        except HeldoutError as error:
            print(f"outputs pack of ratio {ratio:g}: not written: {error}", file=sys.stderr)
            continue
        finally:
            if bar is not None:
                bar.close()
        print(update.describe())


def main(argv) -> int:
    """Evaluates the runs the flags choose; see the module docstring for the exit status."""
    del argv
    options.check_evaluation_flags()
    if not FLAGS.experiment_dir or not FLAGS.output_dir:
        raise UsageError("--experiment_dir and --output_dir are required")
    if FLAGS.outputs and not FLAGS.outputs_dir:
        raise UsageError("--outputs needs --outputs_dir (never the downloaded experiment)")
    refuse_output_over_inputs([FLAGS.output_dir], [], [FLAGS.experiment_dir])
    # The outputs mirror the experiment's layout: never anywhere inside the downloaded tree.
    refuse_output_over_inputs([FLAGS.outputs_dir], input_dirs=[FLAGS.experiment_dir])
    cluster = options.cluster_options()  # checks --scheduler, quiets Dask's INFO
    from tqdm import tqdm

    from heldout.evaluation import fanout as distributed

    evaluation_options = options.evaluation_options()
    runs = distributed.select_runs(FLAGS.experiment_dir, FLAGS.subset_ratio, FLAGS.max_runs)
    bar = None  # started with the first result, so that a refusal stays one line

    def progress(record, reused):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=len(runs), unit="run", file=sys.stderr)
        bar.update(1)
        if not record.ok:
            bar.set_postfix_str(f"last error: run {record.run_id}")

    try:
        summary = distributed.evaluate_runs(
            runs,
            FLAGS.output_dir,
            evaluation_options,
            scheduler=cluster.scheduler,
            n_workers=cluster.local_workers,
            retry_errors=FLAGS.retry_errors,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    _report(summary)
    verdict = options.match_verdict(summary.matches, summary.total, summary.errors)
    if FLAGS.outputs:
        print(f"outputs in {FLAGS.outputs_dir}")
    if FLAGS.pack_outputs and {"margins", "logits"} & set(FLAGS.outputs):
        _pack_outputs(runs)
    if "heldout_probs" in FLAGS.outputs:
        print(
            f"  pred_probs for cleanlab (their mean over the runs that held each example out): "
            f"heldout export-pred-probs --experiment_dir={FLAGS.experiment_dir} "
            f"--outputs_dir={FLAGS.outputs_dir} --output_dir=..."
        )
    if verdict.message:
        print(verdict.message, file=sys.stdout if verdict.status == app.EXIT_OK else sys.stderr)
    return verdict.status


def run() -> None:
    """The `heldout evaluate` command."""
    app.run_command(main, name=NAME)
