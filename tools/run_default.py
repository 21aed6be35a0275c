"""The embedded default: train a small Fashion-MNIST experiment, cross-check, score, plot.

    python tools/run_default.py [--output_dir=./default_output]

1. Builds the default experiment (`heldout.training.default_config()`: MLPs on random
   subsets of Fashion-MNIST, in the released layout) once, cached at
   `$HELDOUT_HOME/experiments/fashion_mnist-mlp` (default `~/.cache/heldout/...`); a
   later call reuses it, and an interrupted build resumes where it stopped.
2. Restores one run's checkpoint and re-evaluates it as demo.py does: every prediction
   must match its aux arrays (N out of N).
3. Computes C-scores, memorization and the top influences (`<output_dir>/scores.npz`).
4. Draws the figures into `<output_dir>/figures/` (PDF and PNG).

Exit status 0 when everything ran and the cross-check matched, 1 otherwise.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "default_output", "Where the scores and figures go."
)
_EXPERIMENT_DIR = flags.DEFINE_string(
    "experiment_dir",
    None,
    "Where the experiment is built and cached (default: heldout.release.default_experiment_dir()).",
)
_INFLUENCE_TOPK = flags.DEFINE_integer(
    "influence_topk", 50, "Most influential training examples kept per test example."
)


def _train(experiment_dir: Path) -> None:
    from tqdm import tqdm

    from heldout import training

    progress = None

    def on_event(event):
        nonlocal progress
        if isinstance(event, training.TrainingPlan):
            if not event.pending:
                print(
                    f"[1/4] default experiment: cached at {event.experiment_dir} "
                    f"({len(event.finished)} runs)"
                )
                return
            print(
                f"[1/4] default experiment: training {len(event.pending)} runs into "
                f"{event.experiment_dir} ({len(event.finished)} already there)"
            )
            progress = tqdm(
                total=len(event.pending) * event.epochs, unit="model-epoch", dynamic_ncols=True
            )
        elif isinstance(event, training.EpochLog):
            progress.update(len(event.run_ids))
            if event.epoch == event.epochs:
                progress.write(
                    f"  ratio {event.subset_ratio:g}, runs {event.run_ids[0]}-"
                    f"{event.run_ids[-1]}: loss {event.loss.mean():.3f} Acc-tr "
                    f"{event.acc_train.mean():.3f} Acc-val {event.acc_val.mean():.3f}"
                )

    try:
        training.train_experiment(training.default_config(), experiment_dir, on_event)
    finally:
        if progress is not None:
            progress.close()


def _cross_check(experiment) -> bool:
    from heldout import evaluation, label_noise

    ratios = experiment.subset_ratios
    run = experiment.runs_at(ratios[len(ratios) // 2])[0]
    source = label_noise.experiment_source(experiment)
    check = evaluation.check_run(run, source, meta=experiment.meta)
    print(
        f"[2/4] demo cross-check of {run.path} (epoch {check.restore.epoch}, global step "
        f"{check.restore.global_step}, subset {100 * run.subset_ratio:g}%):"
    )
    for name, result in check.checks.items():
        print(
            f"      {name:8s} accuracy {result.accuracy:.4f}, {result.matches} out of "
            f"{result.total} predictions match"
        )
    print(f"      {check.matches} out of {check.total} predictions match")
    return check.all_match


def _scores(experiment, path: Path) -> dict:
    import numpy as np

    from heldout import scores

    result = scores.score_experiment(
        experiment,
        scores=("cscore", "memorization", "influence"),
        influence_topk=_INFLUENCE_TOPK.value,
    )
    arrays = result.arrays()
    scores.save_scores(path, arrays)
    cscore = arrays["cscore"]
    memorization = arrays["memorization"]
    print(f"[3/4] scores: {path}")
    print(
        f"      integral C-score: mean {np.nanmean(cscore):.3f} over "
        f"{np.count_nonzero(~np.isnan(cscore))} training examples; "
        f"{np.count_nonzero(cscore < 0.5)} below 0.5"
    )
    print(
        f"      memorization at {result.score_subset_ratio:g}: "
        f"{np.count_nonzero(memorization >= 0.25)} examples >= 0.25; influence: top "
        f"{_INFLUENCE_TOPK.value} per test example"
    )
    return arrays


def main(argv):
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the progress
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from heldout import label_noise, plots, release

    start = time.perf_counter()
    experiment_dir = Path(_EXPERIMENT_DIR.value or release.default_experiment_dir())
    output_dir = Path(_OUTPUT_DIR.value)
    _train(experiment_dir)
    experiment = release.open_experiment(experiment_dir)
    matched = _cross_check(experiment)

    output_dir.mkdir(parents=True, exist_ok=True)
    arrays = _scores(experiment, output_dir / "scores.npz")

    source = label_noise.experiment_source(experiment)
    train, test = source.load_arrays("train"), source.load_arrays("test")
    written = plots.write_figures(
        arrays,
        train.images,
        train.labels,
        output_dir / "figures",
        test_images=test.images,
        test_labels=test.labels,
        class_names=plots.class_names_for(source.name, source.num_classes),
    )
    print(
        f"[4/4] figures: {', '.join(sorted({p.stem for p in written}))} "
        f"({', '.join(sorted({p.suffix[1:] for p in written}))}) in {output_dir / 'figures'}"
    )

    print(
        f"done in {time.perf_counter() - start:.0f} s. Experiment: {experiment_dir}; "
        f"scores: {output_dir / 'scores.npz'}; figures: {output_dir / 'figures'}"
    )
    if not matched:
        print("error: the cross-check found mismatching predictions", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
