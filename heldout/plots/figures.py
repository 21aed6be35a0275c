"""Every figure a scores file allows, drawn and written in one call (`write_figures`).

Inputs are the keys written by `tools/compute_scores.py` (`subset_ratios`, `cscore`,
`cscore_by_ratio`, and `influence` or `influence_topk_index` + `influence_topk_value`) and
the dataset's images and labels in the experiment's index order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from heldout._core.npz import load_npz
from heldout._core.write_safety import ensure_dir
from heldout.errors import ScoresFileError
from heldout.plots.canvas import DPI, check_formats, save_figure
from heldout.plots.captions import count_out_by_ratio, scores_runs
from heldout.plots.cscores import plot_cscore_bins, plot_histograms
from heldout.plots.examples import plot_examples
from heldout.plots.influence import (
    influence_topk,
    influence_training_examples,
    plot_influence,
)
from heldout.plots.influence_evidence import (
    InfluenceEvidence,
    influence_evidence_for,
    influence_picks,
)
from heldout.plots.uncertainty import BAND_KEYS, plot_cscore_bands
from heldout.scores.file import check_score_values

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
FIGURE_NAMES = ("examples", "histograms", "cscore_bins", "cscore_bands", "influence")


def class_names_for(dataset: str | None, num_classes: int) -> list[str]:
    """Readable class names where the dataset is known, else the class ids."""
    base = (dataset or "").split(":", 1)[0].lower()
    if base.startswith("fashion_mnist") and num_classes == 10:
        return list(FASHION_MNIST_CLASSES)
    if base.startswith("cifar10") and not base.startswith("cifar100") and num_classes == 10:
        return list(CIFAR10_CLASSES)
    return [str(c) for c in range(num_classes)]


def load_scores(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a scores `.npz` (never unpickling).

    Raises:
      ScoresFileError: the file is missing, empty, truncated or not an `.npz`, or a
        per-example estimate is infinite or out of range; the message starts with the file.
    """
    arrays = load_npz(path, error=ScoresFileError, what="a scores .npz file (compute_scores)")
    check_score_values(arrays, os.fspath(path))
    return arrays


def draw_figures(
    scores: dict[str, np.ndarray],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    min_influence_runs: int = 5,
    influence_evidence: InfluenceEvidence | None = None,
) -> dict[str, Figure]:
    """Every figure the scores allow, by name (`FIGURE_NAMES`), drawn but not saved.

    `train_labels` should be the labels the models were trained on (for an experiment with
    corrupted labels: `heldout.datasets.relabeled.experiment_labels`), so that a mislabeled
    image shows up among the low C-scores of the class it was labeled as. The influence figure
    needs influence scores and the test split; it leaves out training examples that were
    in or out of fewer than `min_influence_runs` runs; with `influence_evidence` (see
    `heldout.plots.influence_evidence.influence_evidence_for`; default: the file's own
    `influence_pairs`, if any) it gives each pick's q-value and greys those that do not
    survive FDR control. The band figure (`cscore_bands`)
    needs the intervals `tools/compute_scores.py --confidence` writes.

    Raises:
      ScoresFileError: the scores lack the C-score keys, or cover another number of
        training examples than the dataset has.
    """
    for key in ("subset_ratios", "cscore", "cscore_by_ratio"):
        if key not in scores:
            raise ScoresFileError(
                f"the scores lack {key!r} (keys: {sorted(scores)}); compute them with "
                "tools/compute_scores.py --scores=cscore,..."
            )
    cscore = scores["cscore"]
    if cscore.shape[0] != train_labels.shape[0]:
        raise ScoresFileError(
            f"the scores cover {cscore.shape[0]} training examples but the dataset has "
            f"{train_labels.shape[0]}: a different dataset or order than the experiment's?"
        )
    runs = scores_runs(scores)
    figures = {
        "examples": plot_examples(cscore, train_images, train_labels, class_names, runs=runs),
        "histograms": plot_histograms(
            scores["subset_ratios"],
            scores["cscore_by_ratio"],
            cscore,
            count_out_by_ratio=count_out_by_ratio(scores),
            num_runs_by_ratio=scores.get("num_runs_by_ratio"),
        ),
        "cscore_bins": plot_cscore_bins(
            scores["subset_ratios"], scores["cscore_by_ratio"], cscore, runs=runs
        ),
    }
    if all(key in scores for key in BAND_KEYS):
        figures["cscore_bands"] = plot_cscore_bands(
            cscore,
            scores["cscore_ci_low"],
            scores["cscore_ci_high"],
            labels=train_labels,
            class_names=class_names,
            confidence=float(scores["confidence"]) if "confidence" in scores else None,
            runs=runs,
        )
    top = influence_topk(scores, min_runs=min_influence_runs)
    if top is not None and test_images is not None and test_labels is not None:
        influence_runs = int(scores.get("influence_num_runs", 0))
        ratio = scores.get("score_subset_ratio")
        kept = influence_training_examples(scores, min_influence_runs)
        note = (
            f"influence from {influence_runs} runs"
            + (f" at subset ratio {float(ratio):g}" if ratio is not None else "")
            + f" ({test_labels.shape[0]} test examples; "
            + ("all training examples" if kept is None else f"{kept} training examples")
            + f" in and out of at least {min_influence_runs} runs, the others left out)."
        )
        index, value = top
        picks = None
        if influence_evidence is None:
            influence_evidence = influence_evidence_for(scores)  # the file's own pairs
        if influence_evidence is not None:
            picks = influence_picks(scores, index, value, influence_evidence, min_influence_runs)
            index, value = picks.index, picks.value
        else:
            note += (
                "\nWith few runs the largest estimates are mostly noise; no q-values: the file "
                "has no influence_pairs and the runs were not given."
            )
        figures["influence"] = plot_influence(
            index,
            value,
            test_images,
            test_labels,
            train_images,
            train_labels,
            class_names=class_names,
            note=note,
            left_out=f"the rest in or out\nof < {min_influence_runs} runs",
            q_value=None if picks is None else picks.q_value,
            lower=None if picks is None else picks.lower,
            fdr=0.05 if picks is None else influence_evidence.pairs.fdr,
            heading=None if picks is None else picks.heading,
        )
    return figures


def write_figures(
    scores: dict[str, np.ndarray],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    output_dir: str | os.PathLike,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    formats: Sequence[str] = ("pdf", "png"),
    dpi: int = DPI,
    min_influence_runs: int = 5,
    influence_evidence: InfluenceEvidence | None = None,
) -> list[Path]:
    """Draws every figure the scores allow and writes each into `output_dir`.

    Args:
      scores: the arrays of a scores file (`load_scores`); see `draw_figures` for the keys
        each figure needs.
      train_images: the training images [N, H, W, C] in the experiment's index order.
      train_labels: their labels [N], as the models were trained on them (see
        `draw_figures`).
      output_dir: the folder for the files (created if missing).
      test_images, test_labels: the test split, for the influence figure (None: no
        influence figure).
      class_names: names of the classes (default: the ids; see `class_names_for`).
      formats: file formats, each figure written once per format (`check_formats`).
      dpi: resolution of raster formats.
      min_influence_runs: training examples in or out of fewer runs are left out of the
        influence figure.
      influence_evidence: the FDR selection behind the influence, for its q-values
        (`heldout.plots.influence_evidence.influence_evidence_for`); None: none shown.

    Returns:
      The files written, `<output_dir>/<name>.<format>` with `name` from `FIGURE_NAMES`,
      in drawing order and, per figure, in the order of `formats`. Each is written
      atomically (`heldout.plots.canvas.save_figure`).

    Raises:
      UsageError: an unknown format (checked before anything is drawn or written).
      ScoresFileError: the scores lack the C-score keys or cover another number of
        training examples than `train_labels` (see `draw_figures`).
    """
    formats = check_formats(formats)
    figures = draw_figures(
        scores,
        train_images,
        train_labels,
        test_images,
        test_labels,
        class_names,
        min_influence_runs,
        influence_evidence,
    )
    output_dir = Path(output_dir)
    ensure_dir(output_dir)
    written = []
    for name, figure in figures.items():
        written += save_figure(figure, output_dir / name, formats, dpi)
    return written
