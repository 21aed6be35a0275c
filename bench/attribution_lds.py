"""The whole attribution path on a trained experiment: LDS of random tau, the holdout
influence (binary and margin) and last-layer TRAK, and the ceiling, with wall times.

Evaluation runs: a fixed seeded half of the ratio's runs; everything is estimated from
the other half only. Every method is scored against the evaluation runs' logit margins
(outputs.npz) on a seeded subset of --num_test test examples. Expected order: random ~ 0
< last-layer TRAK < holdout margin influence, the ceiling rising with runs.

  python bench/attribution_lds.py --experiment_dir=/work/exp --figure=lds.png
  python bench/attribution_lds.py --experiment_dir=E --quick       # a test's few seconds
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import _shared  # noqa: E402

_EXPERIMENT = flags.DEFINE_string("experiment_dir", "/work/exp", "The experiment (read only).")
_OUTPUTS_DIR = flags.DEFINE_string("outputs_dir", None, "Its outputs.npz elsewhere (a release).")
_RATIO = flags.DEFINE_float("subset_ratio", 0.5, "The runs of this ratio.")
_NUM_TEST = flags.DEFINE_integer("num_test", 1000, "Test examples scored (seeded subset).")
_ESTIMATION = flags.DEFINE_list(
    "estimation_runs", ["64", "128", "all"], "Holdout influence from the first m estimation runs."
)
_TRAK = flags.DEFINE_list("trak_models", ["1", "5", "10"], "Last-layer TRAK checkpoints.")
_SEED = flags.DEFINE_integer("seed", 0, "The split, the test subset, random tau, bootstraps.")
_FIGURE = flags.DEFINE_string("figure", None, "The LDS-against-runs figure (.png).")
_QUICK = flags.DEFINE_bool("quick", False, "A few test examples, TRAK of 1 and 2 models.")


def _counts(values, available: int) -> list[int]:
    counts = {available if v == "all" else min(int(v), available) for v in values}
    return sorted(c for c in counts if c > 0)


def _row(name: str, runs: int, result, seconds: float | None) -> str:
    interval = f"[{result.ci_low:+.3f}, {result.ci_high:+.3f}]"
    wall = "-" if seconds is None else f"{seconds:.1f}"
    return (
        f"| {name} | {runs} | {result.lds:+.3f} | {interval} | {result.num_runs} | "
        f"{result.num_test} | {wall} |"
    )


def main(argv):
    del argv
    from heldout.release.layout import open_experiment
    from heldout.scores.attribution.baselines import holdout_influence, random_attribution
    from heldout.scores.attribution.ceiling import compute_ceiling
    from heldout.scores.attribution.lds import compute_lds
    from heldout.scores.attribution.scoring import ceiling_arrays, margin_reader, read_correctness
    from heldout.scores.attribution.split import split_runs
    from heldout.scores.attribution.trak import LastLayerTrak

    num_test_wanted = 60 if _QUICK.value else _NUM_TEST.value
    trak_wanted = ["1", "2"] if _QUICK.value else _TRAK.value
    print(f"CPU: {_shared.cpu_features()}; {_shared.load_average()}")
    experiment = open_experiment(_EXPERIMENT.value)
    runs = {run.run_id: run for run in experiment.runs_at(_RATIO.value)}
    split = split_runs(sorted(runs), evaluation=0.5, seed=_SEED.value)
    aux = runs[min(runs)].load_aux()
    num_train, num_test = aux.num_train, aux.num_test
    rng = np.random.default_rng(_SEED.value)
    columns = np.sort(rng.choice(num_test, min(num_test_wanted, num_test), replace=False))

    start = time.perf_counter()
    read = margin_reader(_OUTPUTS_DIR.value)
    est_masks, est_margin = read([runs[i] for i in split.estimation])
    eval_masks, eval_margin = read([runs[i] for i in split.evaluation])
    _, est_correct = read_correctness([runs[i] for i in split.estimation])
    est_margin, eval_margin = est_margin[:, columns], eval_margin[:, columns]
    est_correct = est_correct[:, columns]
    reading = time.perf_counter() - start
    print(
        f"{experiment.path}: ratio {_RATIO.value}, {len(split.estimation)} estimation and "
        f"{len(split.evaluation)} evaluation runs (seed {_SEED.value}); {columns.size} of "
        f"{num_test} test examples, {num_train} training examples; outputs read in {reading:.1f} s"
    )

    def scored(tau):
        return compute_lds(tau, eval_masks, eval_margin, seed=_SEED.value)

    rows, methods = [], []  # methods: drawn as bands
    start = time.perf_counter()
    result = scored(random_attribution(columns.size, num_train, _SEED.value))
    rows.append(_row("random", 0, result, time.perf_counter() - start))
    methods.append(("random", result))
    binary = None
    for m in _counts(_ESTIMATION.value, len(split.estimation)):
        for kind, outputs in (("binary", est_correct), ("margin", est_margin)):
            start = time.perf_counter()
            result = scored(holdout_influence(est_masks[:m], outputs[:m]))
            name = f"holdout influence ({kind})"
            rows.append(_row(name, m, result, time.perf_counter() - start))
            binary = (f"{name}, {m} runs", result) if kind == "binary" else binary
    methods.append(binary)  # the largest m; the margin ones are the ceiling's rungs

    trak_counts = _counts(trak_wanted, len(split.estimation))
    if trak_counts:
        from heldout.datasets.relabeled import experiment_source
        from heldout.evaluation.evaluate import ModelCache
        from heldout.evaluation.last_layer_trak import compute_last_layer_trak

        source, cache = experiment_source(experiment.path), ModelCache()
        models, seconds = [], []
        for run_id in split.estimation[: max(trak_counts)]:  # estimation runs only
            start = time.perf_counter()
            one = compute_last_layer_trak(
                [runs[run_id]], source, experiment.meta, num_train, num_test, columns, cache=cache
            )
            models.extend(one.models)
            seconds.append(time.perf_counter() - start)
            print(f"  TRAK features and G^T G of run {run_id}: {seconds[-1]:.1f} s", flush=True)
        for count in trak_counts:
            start = time.perf_counter()
            result = scored(LastLayerTrak(tuple(models[:count]), split.estimation[:count]))
            total = sum(seconds[:count]) + time.perf_counter() - start
            name = f"last-layer TRAK ({count} model{'s' if count > 1 else ''})"
            rows.append(_row(name, count, result, total))
            methods.append((name, result))

    start = time.perf_counter()
    ceiling = compute_ceiling(est_masks, est_margin, eval_masks, eval_margin, seed=_SEED.value)
    ceiling_seconds = time.perf_counter() - start
    for m, result in zip(ceiling.runs, ceiling.results, strict=True):
        rows.append(_row("ceiling: holdout influence (margin)", m, result, None))
    print(
        "\n| method | estimation runs (TRAK: models) | LDS | 95% interval | evaluation runs "
        "| test examples | wall s |\n|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))
    print(f"(the ceiling's {len(ceiling.runs)} rungs together: {ceiling_seconds:.1f} s)")
    print(_shared.load_average("load average at the end"))
    if _FIGURE.value:
        from heldout.plots.attribution import write_attribution_lds

        arrays = {
            **ceiling_arrays(ceiling),
            "num_runs": np.int64(len(split.evaluation)),
            "num_test": np.int64(columns.size),
            "output_kind": np.asarray("margin"),
            "lds": np.float64(np.nan),
            "baseline_names": np.asarray([name for name, _ in methods]),
            "baseline_lds": np.asarray([r.lds for _, r in methods]),
            "baseline_ci_low": np.asarray([r.ci_low for _, r in methods]),
            "baseline_ci_high": np.asarray([r.ci_high for _, r in methods]),
            "baseline_num_test": np.asarray([r.num_test for _, r in methods]),
        }
        title = f"{experiment.name}: LDS against estimation runs (outputs: margin)"
        print(f"wrote {write_attribution_lds(_FIGURE.value, arrays, title)}")


if __name__ == "__main__":
    app.run(main)
