"""Figures of the papers' analyses: per-class C-score statistics, and two scores compared.

`plot_class_statistics` places each class by the mean and spread of its C-scores (the
ImageNet figures of the paper); `plot_score_comparison` compares our scores with another
set (e.g. the published ones) by rank, since agreement in order is what matters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import LogNorm
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


def largest_tie(values: np.ndarray) -> tuple[int, float]:
    """(size, value) of the largest block of equal values (0 and NaN when empty)."""
    if values.size == 0:
        return 0, float("nan")
    distinct, counts = np.unique(values, return_counts=True)
    k = int(np.argmax(counts))
    return int(counts[k]), float(distinct[k])


def plot_score_comparison(
    ours: np.ndarray,
    reference: np.ndarray,
    ours_name: str = "ours",
    reference_name: str = "published",
    bins: int = 30,
    note: str | None = None,
) -> Figure:
    """Two panels: the examples' ranks on both sides (a density), and both histograms.

    Ranks, not values: agreement in order is what the comparison measures. The ranks are
    drawn as hexagons coloured by how many examples fall in each (a log colour scale with
    its colour bar), over the full rank range [0, 1], so a block of tied scores, which
    shares one average rank, shows as one dense cell instead of hiding the rest.

    Args:
      ours, reference: the scores [N] (NaN on either side: left out).
      ours_name, reference_name: the two sides, for the labels.
      bins: bins of the histograms.
      note: what each side rests on (runs per ratio), for the title.

    Returns:
      The figure: the density (axes 0), the histograms (axes 1), the colour bar (axes 2).
    """
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    both = ~np.isnan(ours) & ~np.isnan(reference)
    a, b = ours[both], reference[both]
    figure = new_figure(11.0, 5.0, layout="constrained")
    ax = figure.add_subplot(1, 2, 1)
    hexes = None
    if a.size:
        ranks_a, ranks_b = average_ranks(a) / a.size, average_ranks(b) / b.size
        hexes = ax.hexbin(
            ranks_b,
            ranks_a,
            gridsize=40,
            extent=(0, 1, 0, 1),
            mincnt=1,
            norm=LogNorm(),
            cmap="viridis",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"rank in {reference_name} (fraction)")
    ax.set_ylabel(f"rank in {ours_name} (fraction)")
    tie_a, value_a = largest_tie(a)
    tie_b, value_b = largest_tie(b)
    lines = [f"ranks of the {a.size} examples both define"]
    if max(tie_a, tie_b) > 1:
        lines.append(
            f"largest ties (one average rank each): {tie_a} of {ours_name} at {value_a:.2f}, "
            f"{tie_b} of {reference_name} at {value_b:.2f}"
        )
    if note:
        lines.append(note)
    ax.set_title("\n".join(lines), fontsize=8)
    ax.set_aspect("equal")
    histograms = figure.add_subplot(1, 2, 2)
    low = float(min(a.min(), b.min())) if a.size else 0.0
    high = float(max(a.max(), b.max())) if a.size else 1.0
    edges = np.linspace(low, high if high > low else low + 1, bins + 1)
    histograms.hist(
        b, bins=edges, alpha=0.6, label=f"{reference_name} (n={b.size})", color="tab:orange"
    )
    histograms.hist(a, bins=edges, alpha=0.6, label=f"{ours_name} (n={a.size})", color="tab:blue")
    histograms.set_xlabel("score")
    histograms.set_ylabel("examples")
    histograms.legend(fontsize=8)
    histograms.set_title("histograms", fontsize=10)
    if hexes is not None:
        figure.colorbar(hexes, ax=ax, label="examples per hexagon (log scale)")
    return figure
