"""`heldout privacy`: membership inference (LiRA) against target runs, the other runs of the
ratio as shadows, with the loss-threshold baseline, pooled evaluation and per-example risk.

Prints one table and writes the scores `.npz` (and a log-log ROC figure). The attacks live
in `heldout.scores.privacy`; docs/privacy.md gives the threat model.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags

FLAGS = flags.FLAGS
NAME = "privacy"
STATISTICS = ("margin", "correctness")
EXAMPLES = """\
  heldout privacy --experiment_dir=E --subset_ratio=0.5 --output=privacy.npz --figure=roc.png
  heldout privacy --experiment_dir=data/cifar10-inception --outputs_dir=O --targets=0-15 \\
      --output=privacy.npz
  heldout privacy --experiment_dir=E --statistic=correctness --fix_variance --output=p.npz
  heldout privacy --experiment_dir=E --output=privacy.npz --scheduler=local --dask_workers=2"""


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    cli_flags.experiment_dir(__name__, required=True)
    cli_flags.outputs_dir(__name__, "Read for --statistic=margin.")
    cli_flags.output(__name__, "Must end with .npz.", required=True)
    cli_flags.figure(__name__, "The attacks' ROC curves on log-log axes (.png, .pdf or .svg).")
    cli_flags.subset_ratio(__name__, "Default: 0.5 where the experiment has it.")
    cli_flags.seed(__name__)
    cli_flags.progress(__name__)
    cli_flags.cluster(__name__)  # --scheduler, --dask_workers: the pass over the runs
    cli_flags.define(
        __name__,
        flags.DEFINE_string,
        "targets",
        "16",
        "Target runs: a count drawn with --seed (default 16, or every run where the ratio has "
        "fewer), or run ids (3,5,10-12; one id: 7,). "
        "Each is attacked by shadow runs (--shadows).",
    )
    cli_flags.define(
        __name__,
        cli_flags.DEFINE_choice,
        "statistic",
        "margin",
        "What the attacks read per run: margin (logit margin from outputs.npz) or "
        "correctness (0/1 from the aux arrays alone: the weaker variant).",
        choices=STATISTICS,
    )
    cli_flags.define(
        __name__,
        flags.DEFINE_integer,
        "min_shadows",
        4,
        "Fewer IN or OUT shadow runs than this leave an example's score NaN (counted).",
        lower_bound=1,
    )
    cli_flags.define(
        __name__,
        cli_flags.DEFINE_choice,
        "shadows",
        "others",
        "Each target's shadow runs: others (every other run of the ratio, the target left "
        "out exactly) or non_targets (every run that is no target: one shadow set for all "
        "targets, the paper's threat model; no leave-one-out artifact in privacy_risk).",
        choices=("others", "non_targets"),
    )
    cli_flags.define(
        __name__,
        flags.DEFINE_bool,
        "fix_variance",
        False,
        "LiRA with one global std per side (the median over examples) instead of each "
        "example's own.",
    )


def _ratio_runs(experiment):
    from heldout.scores.attribution.split import ratio_runs

    ratio, runs = ratio_runs(experiment, FLAGS.subset_ratio)
    return ratio, runs


def _with_progress(items, total: int):
    if not FLAGS.progress:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, unit="run", file=sys.stderr, desc="reading runs")


def _shadow_pass(experiment, runs, targets, fan_out):
    """The runs streamed in this process, or their shadow sums read on Dask workers."""
    from heldout.scores.privacy.reading import iter_run_statistics

    if not fan_out.distributed:
        stream = iter_run_statistics(experiment, runs, FLAGS.statistic, FLAGS.outputs_dir)
        return _with_progress(stream, len(runs))
    from heldout.scores.privacy.fanout import read_shadow_pass_on_cluster

    return read_shadow_pass_on_cluster(
        experiment,
        runs,
        targets,
        FLAGS.statistic,
        FLAGS.outputs_dir,
        scheduler=fan_out.scheduler,
        n_workers=fan_out.local_workers,
        progress=FLAGS.progress,
    )


def _print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def main(argv: Sequence[str]) -> int:
    """Runs the command."""
    del argv
    from heldout._core import atomic
    from heldout._core.provenance import provenance_for
    from heldout.cli import options
    from heldout.errors import UsageError
    from heldout.plots.canvas import SUFFIX_FORMATS
    from heldout.plots.privacy import plot_privacy_roc
    from heldout.release.layout import open_experiment
    from heldout.scores.privacy.audit import compute_privacy
    from heldout.scores.privacy.reading import select_targets
    from heldout.scores.privacy.report import privacy_arrays, privacy_table

    if not FLAGS.output.endswith(".npz"):
        raise UsageError(f"--output must end with .npz, got {FLAGS.output}")
    figure = FLAGS.figure
    if figure is not None and figure.rsplit(".", 1)[-1].lower() not in SUFFIX_FORMATS:
        raise UsageError(f"--figure={figure}: write it as {', '.join(SUFFIX_FORMATS)}")
    refuse_output_over_inputs(
        [FLAGS.output, figure], [], [FLAGS.outputs_dir], input_trees=[FLAGS.experiment_dir]
    )
    fan_out = options.cluster_options()  # checks --scheduler
    atomic.probe_writable(FLAGS.output)
    if figure is not None:
        atomic.probe_writable(figure)
    experiment = open_experiment(FLAGS.experiment_dir)
    ratio, runs = _ratio_runs(experiment)
    if len(runs) < 2 * FLAGS.min_shadows:
        raise UsageError(
            f"{experiment.path}: ratio {ratio} has {len(runs)} runs, fewer than the "
            f"{2 * FLAGS.min_shadows} that --min_shadows={FLAGS.min_shadows} needs"
        )
    targets_wanted = FLAGS.targets
    if not FLAGS["targets"].present and targets_wanted.isdigit():
        targets_wanted = str(min(int(targets_wanted), len(runs)))  # the default, capped
    targets = select_targets([run.run_id for run in runs], targets_wanted, FLAGS.seed)
    shadows = len(runs) - 1 if FLAGS.shadows == "others" else len(runs) - len(targets)
    if FLAGS.shadows == "non_targets" and shadows < 2 * FLAGS.min_shadows:
        raise UsageError(
            f"{experiment.path}: {shadows} runs of ratio {ratio} are no target, fewer than "
            f"the {2 * FLAGS.min_shadows} shadows that --min_shadows={FLAGS.min_shadows} needs"
        )
    print(
        f"{len(targets)} target runs of ratio {ratio}, each against {shadows} shadow runs "
        f"({FLAGS.shadows}); statistic {FLAGS.statistic}"
    )
    result = compute_privacy(
        _shadow_pass(experiment, runs, targets, fan_out),
        targets,
        statistic=FLAGS.statistic,
        min_shadows=FLAGS.min_shadows,
        fix_variance=FLAGS.fix_variance,
        seed=FLAGS.seed,
        progress=_print_to_stderr if FLAGS.progress else None,
        shadows=FLAGS.shadows,
    )
    provenance = provenance_for(
        experiment={"path": str(experiment.path), "name": experiment.name},
        outputs_dir=FLAGS.outputs_dir,
        subset_ratio=ratio,
        statistic=FLAGS.statistic,
        targets=[int(i) for i in targets],
        min_shadows=FLAGS.min_shadows,
        fix_variance=FLAGS.fix_variance,
        shadows=FLAGS.shadows,
        seed=FLAGS.seed,
    )
    atomic.write_npz_atomic(FLAGS.output, privacy_arrays(result, provenance))
    print(privacy_table(result))
    print(f"wrote {FLAGS.output}")
    if figure is not None:
        print(f"wrote {plot_privacy_roc(result, figure)}")
    return app.EXIT_OK


def run() -> None:
    """The `heldout privacy` command."""
    define_flags()
    app.run_command(main, name=NAME)
