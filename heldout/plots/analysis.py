"""Figures of the papers' analyses: per-class C-score statistics, and two scores compared.

`plot_class_statistics` places each class by the mean and spread of its C-scores (the
ImageNet figures of the paper); `plot_score_comparison` compares our scores with another
set (e.g. the published ones) by rank, since agreement in order is what matters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from heldout._core.ranks import average_ranks
from heldout.plots.canvas import new_figure


def plot_class_statistics(
    labels: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    counts: np.ndarray,
    class_names: Sequence[str] | None = None,
    annotate: int = 5,
) -> Figure:
    """Class mean against class SD of C-scores (the paper's ImageNet Figures 6-7).

    Every class is a point; the `annotate` most and least regular classes (highest and
    lowest mean) are named. The title gives Pearson r and the counts behind it.
    """
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    defined = ~np.isnan(std)
    r = float(np.corrcoef(mean[defined], std[defined])[0, 1]) if defined.sum() >= 3 else np.nan
    figure = new_figure(5.6, 4.4)
    ax = figure.add_subplot(1, 1, 1)
    ax.scatter(mean, std, s=14 if len(mean) > 50 else 30, color="tab:blue", alpha=0.8)
    order = np.lexsort((labels, -mean))
    named = order if len(order) <= 2 * annotate else np.r_[order[:annotate], order[-annotate:]]
    names = class_names or [str(c) for c in range(int(np.max(labels)) + 1)]
    for k in named:
        ax.annotate(
            names[int(labels[k])],
            (mean[k], std[k]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("class mean C-score")
    ax.set_ylabel("class standard deviation")
    ax.set_title(f"{len(mean)} classes, {int(np.sum(counts))} examples: r = {r:.3f}", fontsize=10)
    figure.tight_layout()
    return figure


def plot_score_comparison(
    ours: np.ndarray,
    reference: np.ndarray,
    ours_name: str = "ours",
    reference_name: str = "published",
    bins: int = 30,
) -> Figure:
    """Two panels: the examples' ranks on both sides (a 2-D histogram), and both histograms.

    Ranks, not values: agreement in order is what the comparison measures, and a rank
    scatter of 50 000 points as a density shows where the two disagree.
    """
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    both = ~np.isnan(ours) & ~np.isnan(reference)
    a, b = ours[both], reference[both]
    figure = new_figure(10.0, 4.2)
    ax = figure.add_subplot(1, 2, 1)
    if a.size:
        ranks_a, ranks_b = average_ranks(a) / a.size, average_ranks(b) / b.size
        ax.hist2d(ranks_b, ranks_a, bins=50, cmap="viridis", cmin=1)
    ax.set_xlabel(f"rank in {reference_name} (fraction)")
    ax.set_ylabel(f"rank in {ours_name} (fraction)")
    ax.set_title(f"ranks of the {a.size} examples both define", fontsize=10)
    ax.set_aspect("equal")
    ax = figure.add_subplot(1, 2, 2)
    low = float(min(a.min(), b.min())) if a.size else 0.0
    high = float(max(a.max(), b.max())) if a.size else 1.0
    edges = np.linspace(low, high if high > low else low + 1, bins + 1)
    ax.hist(b, bins=edges, alpha=0.6, label=f"{reference_name} (n={b.size})", color="tab:orange")
    ax.hist(a, bins=edges, alpha=0.6, label=f"{ours_name} (n={a.size})", color="tab:blue")
    ax.set_xlabel("score")
    ax.set_ylabel("examples")
    ax.legend(fontsize=8)
    ax.set_title("histograms", fontsize=10)
    figure.tight_layout()
    return figure
