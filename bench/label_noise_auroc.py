"""Measurement: do low C-scores flag corrupted labels? (AUROC of 1 - integral C-score)

    python bench/label_noise_auroc.py [--output_dir=/tmp/fashion-noisy] [--epochs=6]

Trains a Fashion-MNIST experiment with a fraction of training labels corrupted once
(default 10%; 3 subset ratios x 16 runs), computes the C-scores from its runs, and
reports the AUROC of `1 - integral C-score` as a detector of the corrupted examples (goal
>= 0.95), with the AUROC of each ratio's C-score and the precision among the lowest
C-scores. The experiment is kept in --output_dir (training resumes there).
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Experiment folder (default: a new temporary folder)."
)
_SUBSET_RATIOS = flags.DEFINE_list("subset_ratios", ["0.3", "0.5", "0.7"], "Subset ratios.")
_RUNS_PER_RATIO = flags.DEFINE_integer("runs_per_ratio", 16, "Runs per subset ratio.")
_EPOCHS = flags.DEFINE_integer("epochs", 6, "Training epochs.")
_LABEL_CORRUPT_PROB = flags.DEFINE_float("label_corrupt_prob", 0.1, "Corrupted fraction.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    # average rank of each run of equal scores (1-based)
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [scores.size]])
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + 1 + end) / 2
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from heldout import release, scores, training
    from heldout.training import label_noise

    output_dir = _OUTPUT_DIR.value or os.path.join(tempfile.mkdtemp(), "fashion_mnist-noisy")
    config = training.TrainingConfig(
        subset_ratios=tuple(float(r) for r in _SUBSET_RATIOS.value),
        runs_per_ratio=_RUNS_PER_RATIO.value,
        epochs=_EPOCHS.value,
        label_corrupt_prob=_LABEL_CORRUPT_PROB.value,
        seed=_SEED.value,
    )
    start = time.perf_counter()
    accuracies = []

    def on_event(event):
        if isinstance(event, training.RunWritten):
            accuracies.append((event.train_accuracy, event.heldout_accuracy, event.test_accuracy))

    training.train_experiment(config, output_dir, on_event=on_event)
    trained = time.perf_counter() - start
    experiment = release.open_experiment(output_dir)
    result = scores.score_experiment(experiment, scores=("cscore",))
    corrupted = label_noise.experiment_label_corruption(experiment).mask(result.cscores.cscore.size)

    cscore = result.cscores.cscore
    defined = ~np.isnan(cscore)
    print(
        f"experiment {output_dir}: {len(experiment.runs)} runs, ratios "
        f"{list(experiment.subset_ratios)}, {_EPOCHS.value} epochs, "
        f"{corrupted.sum()} corrupted labels ({100 * corrupted.mean():.1f}%); trained in "
        f"{trained:.0f} s"
    )
    if accuracies:
        mean = np.mean(accuracies, axis=0)
        print(
            f"mean accuracy w.r.t. trained-on labels: own subset {mean[0]:.3f}, held-out "
            f"training examples {mean[1]:.3f}, test {mean[2]:.3f}"
        )
    print(f"integral C-score defined for {defined.sum()} of {cscore.size} examples")
    value = auroc(1 - cscore[defined], corrupted[defined])
    print(
        f"AUROC of 1 - integral C-score for flagging corrupted labels: {value:.4f} "
        f"(goal >= 0.95: {'met' if value >= 0.95 else 'NOT met'})"
    )
    for ratio, row in zip(
        result.cscores.subset_ratios, result.cscores.cscore_by_ratio, strict=True
    ):
        ok = ~np.isnan(row)
        print(
            f"  AUROC of 1 - C-score at ratio {ratio:g}: "
            f"{auroc(1 - row[ok], corrupted[ok]):.4f} ({ok.sum()} examples)"
        )
    lowest = np.argsort(np.where(defined, cscore, np.inf), kind="stable")[: corrupted.sum()]
    print(f"precision among the {corrupted.sum()} lowest C-scores: {corrupted[lowest].mean():.3f}")


if __name__ == "__main__":
    app.run(main)
