"""The scores file, images and run plan the figure tests draw from, and how to read a panel back."""

from __future__ import annotations

import numpy as np

NUM_TRAIN, NUM_TEST, NUM_CLASSES = 300, 40, 3


def scores_and_images():
    """Scores of 300 training examples (some NaN) with random images; influence of 40 tests."""
    rng = np.random.default_rng(0)
    train_labels = np.arange(NUM_TRAIN) % NUM_CLASSES
    test_labels = np.arange(NUM_TEST) % NUM_CLASSES
    train_images = rng.integers(0, 256, (NUM_TRAIN, 28, 28, 1), dtype=np.uint8)
    test_images = rng.integers(0, 256, (NUM_TEST, 28, 28, 1), dtype=np.uint8)
    ratios = np.array([0.3, 0.5, 0.7])
    by_ratio = rng.random((3, NUM_TRAIN))
    by_ratio[0, :5] = np.nan  # never held out at one ratio
    cscore = np.nanmean(by_ratio, axis=0)
    cscore[7] = np.nan  # never held out at all
    influence = rng.normal(0, 0.1, (NUM_TEST, NUM_TRAIN)).astype(np.float32)
    scores = {
        "subset_ratios": ratios,
        "cscore": cscore,
        "cscore_by_ratio": by_ratio,
        "influence": influence,
        "influence_num_runs": np.int64(16),
        "influence_count_in": np.full(NUM_TRAIN, 10, np.int32),
        "influence_count_out": np.full(NUM_TRAIN, 6, np.int32),
        "score_subset_ratio": np.float64(0.7),
        "cscore_ci_low": np.clip(cscore - 0.1, 0, 1),
        "cscore_ci_high": np.clip(cscore + 0.1, 0, 1),
        "confidence": np.float64(0.95),
    }
    return scores, train_images, train_labels, test_images, test_labels


def shown(ax) -> np.ndarray:
    """The pixels of the image placed in a panel (as given to imshow)."""
    (image,) = ax.images
    return np.asarray(image.get_array())


def run_plan() -> dict:
    """A run plan of two scores, in the JSON shape `tools/plan_runs.py --output` writes; the
    memorization target is never reached (null prediction and runs)."""
    return {
        "experiment": "e",
        "scores": [
            {
                "score": "cscore",
                "runs_per_ratio": [8, 8],
                "repeats": 3,
                "num_examples": 400,
                "measured_rho": 0.5,
                "measured_rho_sd": 0.02,
                "predicted_rho": {"0.5": 0.3, "1": 0.5, "2": 0.65, "4": 0.8},
                "spearman_brown_rho": {"0.5": 0.33, "1": 0.5, "2": 0.67, "4": 0.8},
                "target_rho": 0.75,
                "runs_for_target": [24, 24],
                "ceiling_rho": 0.97,
                "tied_true_values": {"0": 0.02, "1": 0.7},
            },
            {
                "score": "memorization",
                "runs_per_ratio": [8],
                "repeats": 3,
                "num_examples": 350,
                "measured_rho": 0.2,
                "measured_rho_sd": 0.05,
                "predicted_rho": {"0.5": None, "1": 0.2, "2": 0.3, "4": 0.45},
                "spearman_brown_rho": {"0.5": 0.11, "1": 0.2, "2": 0.33, "4": 0.5},
                "target_rho": 0.75,
                "runs_for_target": None,
            },
        ],
    }


def figure_texts(figure) -> list[str]:
    """Every title, suptitle and free text of a figure and its axes, as drawn."""
    texts = [t.get_text() for t in figure.texts]
    if figure._suptitle is not None:
        texts.append(figure._suptitle.get_text())
    for ax in figure.axes:
        texts += [ax.get_title(loc) for loc in ("left", "center", "right")]
        texts += [t.get_text() for t in ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            texts += [t.get_text() for t in legend.get_texts()]
    return [t for t in texts if t]
