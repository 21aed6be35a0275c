"""`heldout export-ground-truth`: the runs of one ratio as the ground truth TRAK and dattri read.

Writes the runs' training masks and test margins (or correctness) into a folder, as TRAK's
`masks.npy`/`margins.npy` and dattri's LDS ground truth, with a JSON sidecar naming the
experiment, the runs and the order. The work lives in `heldout.scores.attribution.ground_truth`.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags
from heldout.cli.flag_types import DEFINE_choice, DEFINE_choice_list

FLAGS = flags.FLAGS
NAME = "export-ground-truth"
EXAMPLES = """\
  heldout export-ground-truth --experiment_dir=E --output_dir=gt --format=trak,dattri
  heldout export-ground-truth --experiment_dir=data/cifar10-inception --outputs_dir=outs \\
      --subset_ratio=0.5 --runs=0.5 --seed=0 --output_dir=gt"""


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    cli_flags.experiment_dir(__name__, required=True)
    cli_flags.outputs_dir(__name__, "Read for --output_kind=margin.")
    cli_flags.output_dir(
        __name__, "Missing, empty, or an earlier export (replaced as a whole).", required=True
    )
    cli_flags.subset_ratio(__name__, "Default: 0.5 where the experiment has it.")
    cli_flags.seed(__name__)
    cli_flags.progress(__name__)
    help = (
        "The runs exported: run ids (3,5,10-12) or a fraction of the ratio's runs (0.5, drawn "
        "with --seed as heldout attribution draws --evaluation_runs); default: all."
    )
    cli_flags.define(__name__, flags.DEFINE_string, "runs", None, help)
    help = (
        "trak: masks.npy + margins.npy; dattri: target_values_lds.npy + indices_lds.npy "
        "(the pair dattri's lds takes)."
    )
    cli_flags.define(
        __name__, DEFINE_choice_list, "format", ["trak"], help, choices=("trak", "dattri")
    )
    help = (  # the meaning `heldout attribution` gives it: one flag, one concept
        "The runs' actual outputs: margin (per-run outputs.npz) or correctness (the aux "
        "arrays alone; 0/1 with ties: the noisier variant)."
    )
    note = "Correctness is written as correctness.npy."
    cli_flags.define(
        __name__,
        DEFINE_choice,
        "output_kind",
        "margin",
        help,
        note=note,
        choices=("margin", "correctness"),
    )
    help = "The split whose outputs are exported: test, or train (the full training split)."
    cli_flags.define(__name__, DEFINE_choice, "split", "test", help, choices=("test", "train"))


def main(argv: Sequence[str]) -> int:
    """Runs the command."""
    del argv
    from heldout.release.layout import open_experiment
    from heldout.scores.attribution import ground_truth
    from heldout.scores.attribution.split import parse_run_selection

    refuse_output_over_inputs(
        [FLAGS.output_dir], input_dirs=[FLAGS.experiment_dir, FLAGS.outputs_dir]
    )
    ground_truth.check_output_dir(FLAGS.output_dir)
    selection = parse_run_selection(FLAGS.runs, "runs")
    experiment = open_experiment(FLAGS.experiment_dir)
    ratio, runs = ground_truth.select_runs(experiment, FLAGS.subset_ratio, selection, FLAGS.seed)
    done = ground_truth.export_ground_truth(
        experiment,
        runs,
        FLAGS.output_dir,
        output_kind=FLAGS.output_kind,
        split=FLAGS.split,
        formats=FLAGS.format,
        outputs_dir=FLAGS.outputs_dir,
        progress=FLAGS.progress,
        run_selection=FLAGS.runs,
        seed=FLAGS.seed,
    )
    print(
        f"exported {len(done.run_ids)} runs of ratio {ratio} x {done.num_examples} {FLAGS.split} "
        f"examples ({FLAGS.output_kind}; masks over {done.num_train} training examples) "
        f"into {done.output_dir}: {', '.join(p.name for p in done.files)}"
    )
    return app.EXIT_OK


def run() -> None:
    """The `heldout export-ground-truth` command."""
    define_flags()
    app.run_command(main, name=NAME)
