r"""Measurement: which detector finds corrupted labels? C-scores, one-run proxies, cleanlab.

Full size (the acceptance run):
  python bench/label_noise.py --output_dir=/tmp/fashion-noisy

Small (a few minutes; not the acceptance numbers):
  python bench/label_noise.py --output_dir=/tmp/fashion-noisy-small --epochs=3 \
      --runs_per_ratio=4 --num_train=4000

Fashion-MNIST with 10 % of the training labels corrupted once (`--label_corrupt_prob=0.1`
and `--seed`, the shared flags of `heldout/cli/flags.py`): every detector sees the
same corrupted labels (checked). Detectors, all scored so that high = suspicious:
- from one heldout experiment (3 ratios x 64 runs by default, the paper's MNIST recipe,
  trained with --record_heldout_probs, kept and resumed in --output_dir):
  1 - integral C-score, memorization (at 0.7, else the largest ratio), 1 - soft C-score (mean
  held-out probability of the label), and cleanlab given the same runs' out-of-sample
  predicted probabilities (each example's mean held-out softmax): 1 - `cleanlab.rank.
  get_label_quality_scores`, and `cleanlab.filter.find_label_issues` (a yes/no flag,
  ranked by self-confidence; its precision and recall are printed too). Same runs, so
  the same budget: the comparison "C-score not below cleanlab - 0.01" is at equal cost;
  and cleanlab again on what `heldout export-pred-probs` wrote (`<output_dir>-pred_probs`,
  the command run as a user runs it): its AUROC must equal the one above within 1e-6
  (checked; with --check_evaluate also from `heldout evaluate --outputs=heldout_probs`);
- from one model trained on the full (noisy) training set (`heldout.proxies`): -CBTL,
  cumulative loss, -p_label_mean, for each of --proxy_sources (the free training passes
  and the overlapped inference pass, side by side; same budget in model-epochs).
Printed per detector: AUROC and average precision, and its training budget in
model-epochs (and in passes over the full training set); the targets (C-score AUROC >=
0.95; CBTL or cumulative loss >= 0.93 from one run; C-score >= cleanlab - 0.01); CPU and
load. Examples never held out by any run are left out of every detector (counted).
Then the budget curve: the binary C-score against cleanlab on the first 1/4, 1/2 and all
of each ratio's runs, so the reader sees how the gap closes with runs.

Why small ratios (0.1, 0.2, 0.3) by default: the binary C-score of a clean but ambiguous
example is small, not 0, and only enough held-out evaluations tell it from a corrupted
example's (an MLP almost never predicts a random wrong label); the soft C-score and
cleanlab see the difference in one evaluation. A run at ratio r costs r passes an epoch
and evaluates a fraction 1 - r of the examples held out: 9 held-out evaluations per pass
at 0.1, 0.43 at 0.7. Measured on 10 000 examples (the same recipe, 64 runs a ratio), the
gap to cleanlab was 0.013 with 0.3/0.5/0.7 at 192 runs and 0.008 with 0.1/0.2/0.3 at
192 runs, a fifth of the passes.
cleanlab is a benchmark dependency (the `dev` extra), never imported by the library.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags, logging

_REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import _shared  # noqa: E402
from heldout.cli import flags as cli_flags  # noqa: E402

cli_flags.training_data(__name__)  # --dataset, --data_dir, --label_corrupt_prob, --seed
cli_flags.recipe(__name__)  # --arch, --epochs, --batch_size, --learning_rate, --mlp_spec
flags.FLAGS.set_default("label_corrupt_prob", 0.1)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "The experiment folder (kept, resumed).")
_SUBSET_RATIOS = flags.DEFINE_list(
    "subset_ratios", ["0.1", "0.2", "0.3"], "Subset ratios (small: see the docstring)."
)
_RUNS_PER_RATIO = flags.DEFINE_integer("runs_per_ratio", 64, "Runs per subset ratio.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 1, "One-run proxies: models averaged.")
_SOURCES = flags.DEFINE_list(
    "proxy_sources",
    ["training_passes", "inference"],
    "One-run proxies: each of these sources (heldout proxies --proxy_source), side by side.",
)
_CHECK_EVALUATE = flags.DEFINE_bool(
    "check_evaluate",
    False,
    "Also re-evaluate every run with `heldout evaluate --outputs=heldout_probs` and check "
    "cleanlab on its export (the release path) against the training records.",
)
_NUM_TRAIN = flags.DEFINE_integer(
    "num_train", None, "Only the first n training examples (small runs): a sliced IDX copy."
)


def _metrics(suspicion: np.ndarray, corrupted: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    return (
        float(roc_auc_score(corrupted, suspicion)),
        float(average_precision_score(corrupted, suspicion)),
    )


def _normalized(probs: np.ndarray) -> np.ndarray:
    """Mean held-out softmax rows summing to 1 again (float16 rounding), as cleanlab wants."""
    probs = probs.astype(np.float64)
    return probs / probs.sum(axis=1, keepdims=True)


def _tool(name: str, *args: str) -> None:
    """`tools/<name>.py args` in a fresh Python, as a user runs it; its failure stops the bench."""
    done = subprocess.run(
        [sys.executable, str(_REPO / "tools" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if done.returncode != 0:
        raise app.UsageError(f"tools/{name}.py failed: {done.stdout[-1000:]}{done.stderr[-2000:]}")


def _exported_auroc(folder: Path, defined, truth, labels, count) -> float:
    """cleanlab's AUROC from an export's files (plain numpy), on the bench's examples; its
    labels and counts must be the bench's."""
    from cleanlab.rank import get_label_quality_scores

    pred_probs = np.load(folder / "pred_probs.npy")
    if not np.array_equal(np.load(folder / "labels.npy"), labels):
        raise AssertionError(f"{folder}/labels.npy: not the labels the runs trained on")
    if not np.array_equal(np.load(folder / "counts.npy"), count):
        raise AssertionError(f"{folder}/counts.npy: not the runs' held-out counts")
    quality = get_label_quality_scores(labels[defined], pred_probs[defined])
    return _metrics(1 - quality, truth)[0]


def _check_exports(experiment_dir: Path, defined, truth, labels, count, auroc: float) -> None:
    """cleanlab on `heldout export-pred-probs` output equals `auroc` within 1e-6 (asserted)."""
    sources = {"training records": (Path(f"{experiment_dir}-pred_probs"), [])}
    if _CHECK_EVALUATE.value:
        outs = Path(f"{experiment_dir}-heldout-outputs")
        start = time.perf_counter()
        _tool(
            "evaluate_runs",
            f"--experiment_dir={experiment_dir}",
            f"--output_dir={experiment_dir}-checks",
            f"--outputs_dir={outs}",
            "--outputs=heldout_probs",
            "--scheduler=none",
        )
        print(f"  heldout evaluate --outputs=heldout_probs: {time.perf_counter() - start:.0f} s")
        sources["heldout evaluate"] = (Path(f"{experiment_dir}-pred_probs-evaluated"), [outs])
    for name, (folder, outputs_dir) in sources.items():
        extra = [f"--outputs_dir={path}" for path in outputs_dir]
        _tool(
            "export_pred_probs",
            f"--experiment_dir={experiment_dir}",
            f"--output_dir={folder}",
            "--noprogress",
            *extra,
        )
        exported = _exported_auroc(folder, defined, truth, labels, count)
        gap = abs(exported - auroc)
        verdict = "equal within 1e-6" if gap <= 1e-6 else "DIFFERENT"
        print(
            f"  cleanlab label quality from export-pred-probs ({name}, {folder}): AUROC "
            f"{exported:.6f} vs {auroc:.6f} from heldout_probs on the same {truth.size} "
            f"examples: |difference| {gap:.1e} -> {verdict}"
        )
        if gap > 1e-6:
            raise AssertionError(f"{folder}: cleanlab AUROC {exported} differs from {auroc}")


def _budget_curve(experiment, labels, corrupted, epochs: int) -> None:
    """Binary C-score against cleanlab on the first k runs of each ratio (same runs)."""
    from cleanlab.rank import get_label_quality_scores

    from heldout.release.reading import read_runs
    from heldout.scores.counts import ScoreAccumulator
    from heldout.scores.soft_cscore import out_of_sample_probs

    ratios = experiment.subset_ratios
    by_ratio = [experiment.runs_at(ratio) for ratio in ratios]  # each by run id
    most = min(len(runs) for runs in by_ratio)
    print("budget curve (the first k runs of each ratio; C-score and cleanlab on the same runs):")
    for k in sorted({max(1, most // 4), max(1, most // 2), most}):
        chosen = [run for runs in by_ratio for run in runs[:k]]
        counts = ScoreAccumulator(ratios)
        for run, aux in read_runs(chosen):
            counts.add(run.subset_ratio, aux)
        cscore = counts.cscores().cscore
        oos = out_of_sample_probs([run.path for run in chosen], labels.size)
        defined = (oos.count > 0) & np.isfinite(cscore)
        probs = _normalized(oos.probs[defined])
        truth = corrupted[defined]
        binary, _ = _metrics(1 - cscore[defined], truth)
        clean, _ = _metrics(1 - get_label_quality_scores(labels[defined], probs), truth)
        passes = sum(run.subset_ratio for run in chosen) * epochs
        print(
            f"  {k:4d} runs a ratio ({len(chosen)} runs, {len(chosen) * epochs} model-epochs, "
            f"{passes:.0f} full passes; {int(defined.sum())} examples): C-score AUROC "
            f"{binary:.4f}, cleanlab {clean:.4f}, gap {clean - binary:+.4f}"
        )


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import cleanlab
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from heldout import training
    from heldout.datasets import relabeled
    from heldout.proxies import compute
    from heldout.release import label_corruption
    from heldout.release import layout as release
    from heldout.scores import experiment as scores
    from heldout.scores.request import ScoreRequest
    from heldout.scores.soft_cscore import out_of_sample_probs
    from heldout.training.data import open_source

    recipe = _shared.recipe_for(_OUTPUT_DIR, "the experiment is kept there")
    print(
        f"CPU: {_shared.cpu_features()}; {_shared.load_average()}; cleanlab {cleanlab.__version__}"
    )
    if _NUM_TRAIN.value is not None:
        opened = open_source(recipe.dataset, recipe.data_dir)
        data_dir = _shared.idx_slice(
            Path(_OUTPUT_DIR.value + "-data"), opened.source, _NUM_TRAIN.value
        )
        recipe = dataclasses.replace(recipe, data_dir=data_dir)
    config = training.TrainingConfig.from_recipe(
        recipe,
        subset_ratios=tuple(float(r) for r in _SUBSET_RATIOS.value),
        runs_per_ratio=_RUNS_PER_RATIO.value,
        record_heldout_probs=True,
    )
    start = time.perf_counter()
    training.train_experiment(config, _OUTPUT_DIR.value)
    experiment = release.open_experiment(_OUTPUT_DIR.value)
    result = scores.score_experiment(experiment, ScoreRequest(scores=("cscore", "memorization")))
    n = result.cscores.cscore.size
    trained_labels = np.asarray(relabeled.experiment_labels(experiment))
    corruption = label_corruption.experiment_label_corruption(experiment)
    corrupted = corruption.mask(n)
    oos = out_of_sample_probs([run.path for run in experiment.runs], n)
    heldout_seconds = time.perf_counter() - start

    by_source, proxy_seconds = {}, {}
    for source in _SOURCES.value:
        start = time.perf_counter()
        by_source[source] = compute.compute_proxies(
            compute.ProxyOptions(
                recipe=recipe,
                num_seeds=_NUM_SEEDS.value,
                proxies=("learning_speed", "confidence"),
                proxy_source=source,
            )
        )
        proxy_seconds[source] = time.perf_counter() - start
        if not np.array_equal(by_source[source].labels, trained_labels):
            raise app.UsageError("the one-run proxies trained on other labels than the experiment")
    proxies = by_source[_SOURCES.value[0]]

    held = oos.count > 0
    cscore = result.cscores.cscore
    memorization = result.memorization.memorization
    defined = held & np.isfinite(cscore) & np.isfinite(memorization)
    pred_probs = _normalized(oos.probs[defined])
    given = trained_labels[defined]
    quality = get_label_quality_scores(given, pred_probs)
    ranked = find_label_issues(given, pred_probs, return_indices_ranked_by="self_confidence")
    issue_rank = np.zeros(defined.sum())  # flagged: by their rank; unflagged: 0
    issue_rank[ranked] = np.linspace(2.0, 1.0, ranked.size)
    truth = corrupted[defined]

    ref_epochs, ref_passes = compute.model_epochs_of_experiment(experiment)
    one_run = proxies.model_epochs
    detectors = [
        ("1 - integral C-score", 1 - cscore[defined], ref_epochs, ref_passes),
        (
            f"memorization at {result.memorization.subset_ratio:g}",
            memorization[defined],
            ref_epochs,
            ref_passes,
        ),
        ("1 - soft C-score", 1 - oos.soft_cscore(trained_labels)[defined], ref_epochs, ref_passes),
        ("cleanlab label quality", 1 - quality, ref_epochs, ref_passes),
        ("cleanlab find_label_issues", issue_rank, ref_epochs, ref_passes),
    ]
    for source, found in by_source.items():
        values = found.proxies
        detectors += [
            (f"-CBTL (one run, {source})", -values["cbtl"][defined], one_run, one_run),
            (
                f"cumulative loss (one run, {source})",
                values["cumulative_loss"][defined],
                one_run,
                one_run,
            ),
            (
                f"-p_label_mean (one run, {source})",
                -values["p_label_mean"][defined],
                one_run,
                one_run,
            ),
        ]
    print(
        f"experiment {experiment.path}: {len(experiment.runs)} runs at "
        f"{list(experiment.subset_ratios)}, {recipe.epochs} epochs, trained and scored in "
        f"{heldout_seconds:.0f} s; one-run proxies in "
        + ", ".join(f"{seconds:.0f} s ({source})" for source, seconds in proxy_seconds.items())
    )
    print(
        f"{int(corrupted.sum())} of {n} labels corrupted ({100 * corrupted.mean():.1f} %); "
        f"{int(defined.sum())} examples scored by every detector ({int((~defined).sum())} "
        "never held out, left out)"
    )
    print(f"{'detector':<46} {'AUROC':>7} {'AP':>7} {'model-epochs':>13} {'full passes':>12}")
    auroc = {}
    for name, suspicion, budget, passes in detectors:
        roc, ap = _metrics(suspicion, truth)
        auroc[name] = roc
        print(f"{name:<46} {roc:7.4f} {ap:7.4f} {budget:13d} {passes:12.0f}")
    flagged = np.zeros(truth.size, bool)
    flagged[ranked] = True
    precision = truth[flagged].mean() if flagged.any() else float("nan")
    print(
        f"  find_label_issues flags {int(flagged.sum())}: precision {precision:.3f}, recall "
        f"{truth[flagged].sum() / max(1, truth.sum()):.3f}"
    )
    c = auroc["1 - integral C-score"]
    best_one = max(
        auroc[f"{name} (one run, {source})"]
        for name in ("-CBTL", "cumulative loss")
        for source in by_source
    )
    clean = max(auroc["cleanlab label quality"], auroc["cleanlab find_label_issues"])
    print(f"  target: C-score AUROC >= 0.95: {c:.4f} -> {'met' if c >= 0.95 else 'NOT met'}")
    print(
        f"  target: CBTL or cumulative loss AUROC >= 0.93 from one run: {best_one:.4f} -> "
        f"{'met' if best_one >= 0.93 else 'NOT met'}"
    )
    print(
        f"  target: C-score not below cleanlab - 0.01 at the same budget: {c:.4f} vs "
        f"{clean:.4f} -> {'met' if c >= clean - 0.01 else 'NOT met'}"
    )
    _check_exports(
        Path(_OUTPUT_DIR.value).resolve(),
        defined,
        truth,
        trained_labels,
        oos.count,
        auroc["cleanlab label quality"],
    )
    _budget_curve(experiment, trained_labels, corrupted, recipe.epochs)
    print(_shared.load_average("load average at the end"))


if __name__ == "__main__":
    app.run(main)
