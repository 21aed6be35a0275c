"""`heldout export-pred-probs`: out-of-sample predicted probabilities for cleanlab.

Averages, for every training example, the softmax of the runs that held it out (their
heldout_probs.npz: beside each run of an experiment trained with --record_heldout_probs, or
in the --outputs_dir of `heldout evaluate --outputs=heldout_probs`), and writes
pred_probs.npy, labels.npy (the labels the runs trained on), counts.npy and pred_probs.json.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags

FLAGS = flags.FLAGS
NAME = "export_pred_probs"
EXAMPLES = """\
  # our own runs (trained with --record_heldout_probs):
  heldout export-pred-probs --experiment_dir=runs/fashion-noisy --output_dir=cleanlab-in
  # a release re-evaluated with `heldout evaluate --outputs=heldout_probs --outputs_dir=O`:
  heldout export-pred-probs --experiment_dir=data/cifar10-inception --outputs_dir=O \\
      --data_dir=~/tensorflow_datasets --output_dir=cleanlab-in
  # then, in Python (rows never held out are NaN; leave them out):
  #   keep = counts > 0
  #   cleanlab.filter.find_label_issues(labels[keep], pred_probs[keep])"""

cli_flags.experiment_dir(__name__, required=True)
cli_flags.outputs_dir(
    __name__,
    "Here: the heldout_probs.npz files of `heldout evaluate --outputs=heldout_probs`.",
)
cli_flags.subset_ratio(__name__, "Default: every run, all ratios (as the soft C-score).")
cli_flags.output_dir(
    __name__,
    "pred_probs.npy, labels.npy, counts.npy and pred_probs.json go here.",
    required=True,
)
cli_flags.data(__name__, "Read for the labels; default: the experiment's.")
cli_flags.progress(__name__)
flags.DEFINE_integer(
    "min_count",
    0,
    "Refuse (nothing written) when an example is held out by fewer runs than this; 1: "
    "every example must have a finite row. Default 0: NaN rows, counted.",
    lower_bound=0,
)


def main(argv: Sequence[str]) -> int:
    """Reads every run's held-out softmax, checks the labels, writes the export."""
    del argv
    from tqdm import tqdm

    from heldout.release import layout as release
    from heldout.scores import pred_probs as export

    output_files = [f"{FLAGS.output_dir}/{name}" for name in export.EXPORT_FILES]
    refuse_output_over_inputs(
        [FLAGS.output_dir, *output_files],
        input_dirs=[FLAGS.outputs_dir],
        input_trees=[FLAGS.experiment_dir],
    )
    export.check_output_dir(FLAGS.output_dir)
    experiment = release.open_experiment(FLAGS.experiment_dir)
    runs = export.select_runs(experiment, FLAGS.subset_ratio)
    with tqdm(total=len(runs), unit="run", file=sys.stderr, disable=not FLAGS.progress) as bar:
        probs = export.accumulate_heldout_probs(
            experiment, runs, FLAGS.outputs_dir, progress=lambda run: bar.update(1)
        )
    where = FLAGS.outputs_dir or FLAGS.experiment_dir
    export.require_held_out(probs, FLAGS.min_count, where)
    from heldout.datasets import source_for_meta  # TensorFlow: for the labels only

    source = source_for_meta(experiment.meta, FLAGS.dataset, FLAGS.data_dir)
    labels, labels_source = export.trained_labels(
        experiment, source.load_arrays("train").labels, probs.probs.shape[1]
    )
    result = export.export_pred_probs(
        probs,
        labels,
        labels_source,
        experiment={"path": str(experiment.path), "name": experiment.name},
        outputs_dir=None if FLAGS.outputs_dir is None else str(FLAGS.outputs_dir),
        subset_ratio=FLAGS.subset_ratio,
        runs=[[run.subset_ratio, run.run_id] for run in runs],
        data={"dataset": FLAGS.dataset, "data_dir": FLAGS.data_dir},
    )
    export.save_pred_probs(FLAGS.output_dir, result)
    held = int(result.held_out.sum())
    never = result.counts.size - held
    counts = result.counts[result.held_out]
    print(
        f"pred_probs of {result.counts.size} training examples x {result.pred_probs.shape[1]} "
        f"classes from {probs.num_runs} runs ({labels_source} labels) in {FLAGS.output_dir}"
    )
    if held:
        print(
            f"  {held} examples held out by {int(counts.min())} to {int(counts.max())} runs "
            f"(mean {counts.mean():.1f})"
        )
    if never:
        print(
            f"  {never} examples never held out: NaN rows (counts 0); leave them out for "
            "cleanlab (keep = counts > 0)"
        )
    return 0


def run() -> None:
    """The `heldout export-pred-probs` command."""
    app.run_command(main, NAME)
