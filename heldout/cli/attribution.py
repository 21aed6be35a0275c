"""`heldout attribution`: the linear datamodeling score (LDS) of an attribution file.

Scores the file against the runs of one subset ratio, beside the built-in baselines
(random, holdout influence, last-layer TRAK, all from estimation runs only) and the
ceiling, prints one table, writes the scores `.npz` and optionally the figure. The metric
lives in `heldout.scores.attribution`; TRAK's features in `heldout.evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags

FLAGS = flags.FLAGS
NAME = "attribution"
OUTPUT_KINDS = ("margin", "correctness")
EXAMPLES = """\
  heldout attribution --experiment_dir=data/cifar10-inception --attribution=trak.npy \\
      --output_kind=correctness --output=lds.npz
  heldout attribution --experiment_dir=E --attribution=scores.npz --subset_ratio=0.5 \\
      --evaluation_runs=0.25 --output_kind=correctness --output=lds.npz
  heldout attribution --experiment_dir=E --attribution=tau.npy --output_kind=margin \\
      --trak_models=5 --output=lds.npz --figure=lds.png"""


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    cli_flags.experiment_dir(__name__, required=True)
    cli_flags.outputs_dir(__name__, "Read for --output_kind=margin.")
    cli_flags.output(__name__, "Must end with .npz.", required=True)
    cli_flags.subset_ratio(__name__, "Default: 0.5 where the experiment has it.")
    cli_flags.run_split(__name__)
    cli_flags.seed(__name__)
    cli_flags.figure(
        __name__,
        "LDS against estimation runs (the ceiling) with the methods as bands; .png/.pdf/.svg.",
    )
    cli_flags.data(__name__, "For --trak_models; default: the experiment's.")
    cli_flags.define(
        __name__,
        flags.DEFINE_integer,
        "trak_models",
        0,
        "Last-layer TRAK baseline averaged over the checkpoints of this many estimation runs "
        "(the first by run id; restored with TensorFlow); 0: off.",
        lower_bound=0,
    )
    cli_flags.define(
        __name__,
        cli_flags.DEFINE_path,
        "attribution",
        None,
        "An attribution tau: dense .npy/.npz [n_test, n_train] or TRAK's [n_train, n_test], "
        "or top-k (influence_topk_index/_value, or index/value) [n_test, k]; positions in "
        "the full training and test splits.",
        required=True,
    )
    cli_flags.define(
        __name__,
        cli_flags.DEFINE_choice,
        "orientation",
        None,
        "How a dense attribution is laid out; needed only when it is square.",
        choices=("test_by_train", "train_by_test"),
    )
    cli_flags.define(
        __name__,
        cli_flags.DEFINE_choice,
        "output_kind",
        "correctness",
        "The runs' actual outputs: margin (per-run outputs.npz) or correctness (the aux "
        "arrays alone; 0/1 with ties: the noisier variant).",
        choices=OUTPUT_KINDS,
    )


def outputs_reader_for(output_kind: str, outputs_dir: str | None):
    """The reader of the runs' masks and outputs for `output_kind`: 0/1 correctness from
    the aux arrays, or logit margins from the runs' `outputs.npz` (beside the runs, or in
    `outputs_dir` for a release evaluated with `heldout evaluate --outputs=margins`)."""
    from heldout.scores.attribution.scoring import margin_reader, read_correctness

    if output_kind == "correctness":
        return read_correctness
    return margin_reader(outputs_dir)


def _ratio_runs(experiment):
    from heldout.scores.attribution.split import ratio_runs

    ratio, runs = ratio_runs(experiment, FLAGS.subset_ratio)
    return ratio, {run.run_id: run for run in runs}


def _split_sizes(experiment, runs) -> tuple[int, int]:
    from heldout.release.reading import split_sizes_of

    meta = experiment.meta
    if meta.num_train is not None and meta.num_test is not None:
        return meta.num_train, meta.num_test
    first = runs[min(runs)]
    sizes = split_sizes_of(first.aux_path)
    if sizes is None:
        aux = first.load_aux()  # raises, naming the file
        sizes = (aux.num_train, aux.num_test)
    return sizes


def _last_layer_trak(experiment, runs, split, num_train: int, num_test: int) -> dict:
    """{"last-layer TRAK (N models)": the attribution} from the first --trak_models
    estimation runs' checkpoints; {} when off."""
    import sys

    from tqdm import tqdm

    from heldout.errors import UsageError

    count = FLAGS.trak_models
    if not count:
        return {}
    if count > len(split.estimation):
        raise UsageError(
            f"--trak_models={count}: only {len(split.estimation)} estimation runs have "
            "checkpoints to read (evaluation runs never do)"
        )
    from heldout.datasets.relabeled import experiment_source
    from heldout.evaluation.last_layer_trak import compute_last_layer_trak

    source = experiment_source(experiment.path, FLAGS.dataset, FLAGS.data_dir)
    chosen = [runs[i] for i in split.estimation[:count]]

    def progress(items):
        return tqdm(items, desc="last-layer TRAK", unit="model", file=sys.stderr)

    trak = compute_last_layer_trak(
        chosen, source, experiment.meta, num_train, num_test, progress=progress
    )
    return {f"last-layer TRAK ({count} model{'s' if count > 1 else ''})": trak}


def main(argv: Sequence[str], outputs_reader=None) -> int:
    """Runs the command; `outputs_reader` replaces the reader `--output_kind` picks."""
    del argv
    from heldout._core import atomic
    from heldout._core.provenance import file_identity, provenance_for
    from heldout.errors import UsageError
    from heldout.plots.canvas import SUFFIX_FORMATS
    from heldout.release.layout import open_experiment
    from heldout.scores.attribution import scoring
    from heldout.scores.attribution.inputs import load_attribution
    from heldout.scores.attribution.split import parse_run_selection, split_runs

    if not FLAGS.output.endswith(".npz"):
        raise UsageError(f"--output must end with .npz, got {FLAGS.output}")
    figure_suffix = (FLAGS.figure or "").rpartition(".")[2].lower()
    if FLAGS.figure and figure_suffix not in SUFFIX_FORMATS:
        raise UsageError(f"--figure={FLAGS.figure}: give a .png, .pdf or .svg file")
    refuse_output_over_inputs(
        [FLAGS.output, *([FLAGS.figure] if FLAGS.figure else [])],
        [FLAGS.attribution],
        [FLAGS.outputs_dir],
        input_trees=[FLAGS.experiment_dir],
    )
    estimation = parse_run_selection(FLAGS.estimation_runs, "estimation_runs")
    evaluation = parse_run_selection(FLAGS.evaluation_runs, "evaluation_runs")
    reader = outputs_reader or outputs_reader_for(FLAGS.output_kind, FLAGS.outputs_dir)
    atomic.probe_writable(FLAGS.output)
    if FLAGS.figure:
        atomic.probe_writable(FLAGS.figure)
    experiment = open_experiment(FLAGS.experiment_dir)
    ratio, runs = _ratio_runs(experiment)
    split = split_runs(sorted(runs), estimation, evaluation, seed=FLAGS.seed)
    num_train, num_test = _split_sizes(experiment, runs)
    loaded = load_attribution(FLAGS.attribution, num_train, num_test, FLAGS.orientation)
    print(
        f"read {FLAGS.attribution}: {loaded.layout}, {loaded.orientation} "
        f"(key {loaded.key or 'the .npy array'}); {len(split.estimation)} estimation and "
        f"{len(split.evaluation)} evaluation runs of ratio {ratio}"
    )
    extra = _last_layer_trak(experiment, runs, split, num_train, num_test)
    scored = scoring.score_attribution(
        loaded.attribution, runs, split, reader, FLAGS.output_kind, FLAGS.seed, extra
    )
    provenance = provenance_for(
        experiment={"path": str(experiment.path), "name": experiment.name},
        attribution={
            **file_identity(FLAGS.attribution),
            "layout": loaded.layout,
            "orientation": loaded.orientation,
            "key": loaded.key,
        },
        subset_ratio=ratio,
        output_kind=FLAGS.output_kind,
        seed=FLAGS.seed,
        trak_models=FLAGS.trak_models,
    )
    arrays = scoring.lds_arrays(scored, provenance)
    atomic.write_npz_atomic(FLAGS.output, arrays)
    print(scoring.lds_table(scored))
    print(f"wrote {FLAGS.output}")
    if FLAGS.figure:
        from heldout.plots.attribution import write_attribution_lds

        print(f"wrote {write_attribution_lds(FLAGS.figure, arrays)}")
    return app.EXIT_OK


def run() -> None:
    """The `heldout attribution` command."""
    define_flags()
    app.run_command(main, name=NAME)
