"""Figures of C-score distributions: histograms per subset ratio, and bins across ratios.

`plot_histograms` and `plot_cscore_histogram` show how C-scores spread over [0, 1];
`plot_cscore_bins` follows examples binned by integral C-score across the subset ratios,
where the easy examples are learned at small ratios and the hard ones only at large.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.figure import Figure

from heldout.plots.canvas import new_figure


def plot_histograms(
    subset_ratios: np.ndarray,
    cscore_by_ratio: np.ndarray,
    cscore: np.ndarray | None = None,
    bins: int = 20,
) -> Figure:
    """C-score histogram per subset ratio (and of the integral C-score when given)."""
    panels = [
        (f"subset ratio {r:g}", row) for r, row in zip(subset_ratios, cscore_by_ratio, strict=True)
    ]
    if cscore is not None:
        panels.append(("integral C-score", cscore))
    cols = min(3, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    figure = new_figure(3.4 * cols, 2.6 * rows)
    edges = np.linspace(0, 1, bins + 1)
    for k, (title, values) in enumerate(panels):
        ax = figure.add_subplot(rows, cols, k + 1)
        values = np.asarray(values, dtype=np.float64)
        defined = values[~np.isnan(values)]
        ax.hist(defined, bins=edges, color="tab:blue" if "ratio" in title else "tab:green")
        ax.set_title(f"{title} ({defined.size} examples)", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("C-score", fontsize=8)
        ax.set_ylabel("examples", fontsize=8)
        ax.set_yscale("log")
        # Plain numbers ("20", not "2 x 10^1") on the log axis, minor ticks labelled only
        # when the axis spans little more than a decade (matplotlib's own rule).
        ax.yaxis.set_major_formatter(ticker.LogFormatter())
        ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False))
        ax.tick_params(which="both", labelsize=7)
    figure.tight_layout()
    return figure


def plot_cscore_histogram(cscore: np.ndarray, bins: int = 30, title: str | None = None) -> Figure:
    """Histogram of integral C-scores (the paper's Figure 3, left: 30 bins on [0, 1])."""
    values = np.asarray(cscore, dtype=np.float64)
    defined = values[~np.isnan(values)]
    figure = new_figure(5.0, 3.4)
    ax = figure.add_subplot(1, 1, 1)
    ax.hist(defined, bins=np.linspace(0, 1, bins + 1), color="tab:green")
    ax.set_xlim(0, 1)
    ax.set_xlabel("integral C-score")
    ax.set_ylabel("examples")
    ax.set_title(title or f"C-scores of {defined.size} examples ({bins} bins)", fontsize=10)
    figure.tight_layout()
    return figure


def bin_means(cscore: np.ndarray, cscore_by_ratio: np.ndarray, num_bins: int = 10):
    """Examples binned by integral C-score; per bin: (edges, counts, mean C-score per ratio).

    Returns edges [num_bins + 1], counts [num_bins], means [num_bins, num_ratios] (NaN for
    an empty bin or a ratio where no example of the bin was held out).
    """
    cscore = np.asarray(cscore, dtype=np.float64)
    edges = np.linspace(0, 1, num_bins + 1)
    which = np.clip(np.digitize(cscore, edges[1:-1]), 0, num_bins - 1)
    defined = ~np.isnan(cscore)
    counts = np.zeros(num_bins, dtype=np.int64)
    means = np.full((num_bins, cscore_by_ratio.shape[0]), np.nan)
    for b in range(num_bins):
        members = defined & (which == b)
        counts[b] = members.sum()
        if counts[b]:
            block = cscore_by_ratio[:, members]
            with np.errstate(invalid="ignore"):
                seen = (~np.isnan(block)).sum(axis=1)
                means[b] = np.where(
                    seen > 0, np.nansum(block, axis=1) / np.maximum(seen, 1), np.nan
                )
    return edges, counts, means


def plot_cscore_bins(
    subset_ratios: np.ndarray, cscore_by_ratio: np.ndarray, cscore: np.ndarray, num_bins: int = 10
) -> Figure:
    """Mean C-score against subset ratio, one line per bin of integral C-score."""
    edges, counts, means = bin_means(cscore, cscore_by_ratio, num_bins)
    figure = new_figure(6.0, 4.2)
    ax = figure.add_subplot(1, 1, 1)
    cmap = colormaps["viridis"]
    for b in range(num_bins):
        if counts[b] == 0:
            continue
        ax.plot(
            subset_ratios,
            means[b],
            marker="o",
            markersize=3,
            color=cmap(b / max(1, num_bins - 1)),
            label=f"[{edges[b]:.1f}, {edges[b + 1]:.1f}{']' if b == num_bins - 1 else ')'}"
            f"  n={counts[b]}",
        )
    ax.set_xlabel("subset ratio")
    ax.set_ylabel("mean C-score at that ratio")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("examples binned by integral C-score", fontsize=10)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    figure.tight_layout()
    return figure
