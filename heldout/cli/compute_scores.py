"""`heldout scores`: C-scores, memorization and influence of an experiment into one `.npz`.

The file is written under a temporary name and renamed when complete. A malformed run
stops the command with a message naming its file, unless --skip_bad_runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np
from absl import flags

from heldout._core import atomic
from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app, options
from heldout.cli import flags as cli_flags
from heldout.cli.flag_types import DEFINE_finite_float
from heldout.errors import AuxArraysError, UsageError
from heldout.release import layout as release
from heldout.scores import experiment as scores
from heldout.scores import file as scores_file
from heldout.scores import influence
from heldout.scores.request import ScoreRequest
from heldout.scores.uncertainty.threshold import ThresholdCheck, check_influence_threshold

EXAMPLES = """\
  heldout scores --experiment_dir=~/data/cifar10-inception --output=~/cifar10-scores.npz \\
      --scores=cscore,memorization,influence
  heldout scores --experiment_dir=data/imagenet-resnet50 --output=infl.npz \\
      --scores=influence --influence_topk=50 --scheduler=local --dask_workers=4"""

FLAGS = flags.FLAGS
DEFAULT_FDR = 0.05  # the rate a threshold is checked against when no pairs were selected
cli_flags.experiment_dir(__name__, required=True)
cli_flags.output(__name__, "Must end with .npz.", required=True)
cli_flags.scores(__name__, ["cscore", "memorization"])
cli_flags.subset_ratio(
    __name__, "For memorization and influence; default 0.7 when present, else the largest."
)
flags.DEFINE_integer(
    "influence_topk",
    0,
    "0: the dense influence matrix [N_test, N_train]; K > 0: the K most influential "
    "training examples per test example (for ImageNet-sized experiments).",
    lower_bound=0,
)
flags.DEFINE_enum(
    "backend",
    "auto",
    list(influence.BACKENDS),
    "How influence is computed (same result): numpy (float32 GEMM), popcount (bit-packed "
    "runs, exact counts, all CPU cores), tf-gpu (TensorFlow on a GPU); auto: the fastest "
    "available for the problem size. The summary and the file's influence_backend say "
    "which ran.",
)
cli_flags.cluster(__name__, threads=True)  # --scheduler, --dask_workers, --reader_threads
cli_flags.run_checks(__name__)  # --skip_bad_runs, --progress
flags.DEFINE_float(
    "confidence",
    None,
    "E.g. 0.95: write a confidence interval beside every estimate (*_ci_low, *_ci_high; "
    "docs/methods.md says which intervals and their measured coverage).",
)
flags.DEFINE_float(
    "fdr",
    0.05,
    "influence_pairs: the false-discovery rate of the selected pairs (Benjamini-Hochberg "
    "over Fisher's exact one-sided tests).",
)
cli_flags.define(
    __name__,
    DEFINE_finite_float,
    "min_memorization",
    None,
    "influence_pairs: test only training examples with at least this memorization "
    "(the published pairs used 0.25); default: all.",
    **cli_flags.UNIT_INTERVAL,
)


def _report_bad_run(run, error: AuxArraysError) -> None:
    print(f"skipping bad run: {error}", file=sys.stderr)


def _defined_mean(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Where `values` are not NaN, and their mean there (NaN when none are)."""
    defined = ~np.isnan(values)
    return defined, np.mean(values[defined]) if defined.any() else float("nan")


def _summary(result: scores.ExperimentScores, seconds: float, output: str) -> str:
    lines = [f"experiment {result.experiment}: scores written to {output} in {seconds:.1f} s"]
    runs = ", ".join(
        f"{ratio:g}: {int(n)}"
        for ratio, n in zip(result.subset_ratios, result.num_runs_by_ratio, strict=True)
    )
    lines.append(f"  runs per subset ratio: {runs}")
    if result.skipped:
        lines.append(f"  skipped bad runs: {len(result.skipped)}")
    if result.cscores is not None:
        c = result.cscores
        defined, mean = _defined_mean(c.cscore)
        lines.append(
            f"  C-score: mean {mean:.4f} over {defined.sum()} of {c.cscore.size} training "
            "examples (the rest were never held out)"
        )
        for ratio, row, count in zip(
            c.subset_ratios, c.cscore_by_ratio, c.heldout_count_by_ratio, strict=True
        ):
            lines.append(
                f"    at {ratio:g}: mean {np.nanmean(row) if count.any() else float('nan'):.4f},"
                f" median held-out runs per example {int(np.median(count))}"
            )
    if result.memorization is not None:
        m = result.memorization
        defined, mean = _defined_mean(m.memorization)
        lines.append(
            f"  memorization at {m.subset_ratio:g}: mean {mean:.4f}, "
            f"{np.count_nonzero(m.memorization[defined] >= 0.25)} examples >= 0.25, "
            f"{np.count_nonzero(~defined)} undefined"
        )
    if result.influence is not None:
        i = result.influence
        if i.is_topk:
            values = i.topk_value[:, 0]
        else:  # a streamed matrix kept its rows' maxima as it was written
            values = getattr(i.matrix, "row_fmax", None)
            if values is None:
                values = np.fmax.reduce(i.matrix, axis=1)
        shape = (
            f"top-{i.topk_index.shape[1]} per test example"
            if i.is_topk
            else f"dense {i.matrix.shape[0]} x {i.matrix.shape[1]}"
        )
        pairs = result.influence_pairs  # its rate, so that the two lines speak of one rule
        fdr = DEFAULT_FDR if pairs is None else pairs.fdr
        check = check_influence_threshold(i, values, fdr=fdr, pairs=pairs)
        lines.append(
            f"  influence at {i.subset_ratio:g} ({i.num_runs} runs, {shape}): "
            f"{check.num_above} test examples have a training example "
            f"with influence >= {check.threshold:g}"
        )
        lines.append(_threshold_line(check))
        lines.append(f"    computed by the {i.backend} backend")
    lines += _uncertainty_summary(result)
    return "\n".join(lines)


def _threshold_line(check: ThresholdCheck) -> str:
    """What the fixed threshold is worth beside FDR control: survivors, or a warning."""
    if check.too_few_runs:
        return (
            f"    warning: at {check.count_in:g} runs in and {check.count_out:g} out, one "
            f"influence estimate has a standard error up to {check.standard_error:.2f}; "
            f"the {check.threshold:g} threshold is within noise (FDR-selected pairs: "
            "--scores=influence_pairs)"
        )
    if check.num_surviving is None:
        return (
            f"    not checked against FDR control at {check.fdr:g} (top-k or streamed "
            "values; --scores=influence_pairs selects the pairs)"
        )
    return (
        f"    of these, {check.num_surviving} have such a pair that survives FDR control at "
        f"{check.fdr:g} (Benjamini-Hochberg over Fisher's exact tests of every pair, on the "
        "same counts)"
    )


def _uncertainty_summary(result: scores.ExperimentScores) -> list[str]:
    """Lines about the intervals and the FDR-selected pairs, with what is behind them."""
    lines = []
    intervals = result.intervals
    if intervals is not None:
        lines.append(f"  {intervals.confidence:.0%} intervals written beside the estimates:")
        for name, low, high in (
            ("C-score", intervals.cscore_low, intervals.cscore_high),
            ("memorization", intervals.memorization_low, intervals.memorization_high),
            ("influence", intervals.influence_low, intervals.influence_high),
        ):
            if low is not None:
                width = high - low
                defined = ~np.isnan(width)
                median = float(np.median(width[defined])) if defined.any() else float("nan")
                lines.append(
                    f"    {name}: median width {median:.3f} over {int(defined.sum())} estimates"
                )
    pairs = result.influence_pairs
    if pairs is not None:
        family = (
            "all training examples"
            if pairs.min_memorization is None
            else f"training examples with memorization >= {pairs.min_memorization:g}"
        )
        lines.append(
            f"  influence pairs at {pairs.subset_ratio:g} ({pairs.num_runs} runs): "
            f"{pairs.train_index.size} selected at FDR {pairs.fdr:g} out of "
            f"{pairs.num_tests} pairs tested ({family})"
        )
    return lines


def _plan_line(plan: influence.InfluencePlan) -> str:
    """The backend and the memory an influence scoring expects, said before it starts."""
    return (
        f"influence: the {plan.choice.backend} backend ({plan.choice.reason}); expected peak "
        f"memory about {plan.peak_bytes / 2**30:.2f} GiB ({plan.held})"
    )


def _streams_influence(requested: Sequence[str]) -> bool:
    """Whether the dense influence is only written, so it can be streamed to the file:
    nothing else asked for (intervals and other scores read the matrix)."""
    return (
        list(requested) == ["influence"] and FLAGS.influence_topk == 0 and FLAGS.confidence is None
    )


def main(argv: Sequence[str]) -> int:
    del argv  # checked by app.guarded
    if not FLAGS.output.endswith(".npz"):
        raise UsageError(f"--output must end with .npz, got {FLAGS.output}")
    refuse_output_over_inputs([FLAGS.output], input_trees=[FLAGS.experiment_dir])
    start = time.perf_counter()
    experiment = release.open_experiment(FLAGS.experiment_dir)
    # Hours of reading must not end in "permission denied": try the folder first.
    atomic.probe_writable(FLAGS.output)
    soft = "soft_cscore" in FLAGS.scores  # heldout.scores.soft_cscore: from other files than aux
    requested = [name for name in FLAGS.scores if name != "soft_cscore"] or ["cscore"]
    fan_out = options.cluster_options()
    if fan_out.distributed:
        from heldout.scores import fanout as scores_distributed

        score, workers = scores_distributed.cluster_scorer(fan_out), None
    else:
        score, workers = scores.score_experiment, FLAGS.reader_threads
    request = ScoreRequest(
        scores=tuple(requested),
        subset_ratio=FLAGS.subset_ratio,
        influence_topk=FLAGS.influence_topk,
        backend=FLAGS.backend,
        confidence=FLAGS.confidence,
        fdr=FLAGS.fdr,
        min_memorization=FLAGS.min_memorization,
        skip_bad_runs=FLAGS.skip_bad_runs,
    )
    if not fan_out.distributed and _streams_influence(requested):
        # Only written: computed block by block while it is (never held whole).
        request = request.replace(influence_options={"stream_dense": True})
    plan = scores.plan_experiment_influence(experiment, request)
    if plan is not None:
        print(_plan_line(plan), file=sys.stderr)
    result = score(
        experiment,
        request,
        workers=workers,
        on_bad_run=_report_bad_run,
        progress=FLAGS.progress,
    )
    arrays = result.arrays()
    if soft:
        from heldout.datasets.relabeled import experiment_labels
        from heldout.scores.soft_cscore import experiment_soft_cscores

        arrays.update(experiment_soft_cscores(experiment, experiment_labels(experiment)))
    scores_file.save_scores(FLAGS.output, arrays)
    print(_summary(result, time.perf_counter() - start, FLAGS.output))
    if soft:
        defined = arrays[scores_file.SOFT_CSCORE_COUNT_OUT] > 0
        print(
            f"  soft C-score: mean {np.mean(arrays['soft_cscore'][defined]):.4f} over "
            f"{int(defined.sum())} training examples held out by at least one run"
        )
    return 0


def run() -> None:
    """The `heldout scores` command."""
    app.run_command(main, "compute_scores", error_status=1)
