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
from heldout.plots.captions import UNKNOWN_RUNS

MAX_ALIGNED_BINS = 40  # above this many attainable fractions, neighbours share a bin


def fraction_bins(
    values: np.ndarray, denominators: np.ndarray | None, bins: int = 20
) -> tuple[np.ndarray, np.ndarray, str]:
    """Bin edges and heights for estimates k/n, and a note on how they were binned.

    Equal bins over k/n values sawtooth: each bin holds a varying number of attainable
    fractions. With the runs that held each example out (`denominators`, n), the edges
    are the cell boundaries (k +- 1/2)/n of the median n, grouped evenly when there are
    more than `MAX_ALIGNED_BINS` cells; an estimate with another n counts spread evenly
    over its own cell [(k - 1/2)/n, (k + 1/2)/n] (0 and 1 stay in the end bins), so every
    bin gets its fair share and the heights still sum to the examples. Without counts, or
    for values that are not k/n, `bins` equal bins on [0, 1], and the note says why.

    Args:
      values: the defined estimates [M].
      denominators: the runs behind each [M], or None.
      bins: the equal bins used when the values are not binned by their fractions.

    Returns:
      (edges [B + 1], heights [B], note).
    """
    values = np.asarray(values, dtype=np.float64)
    plain = np.linspace(0, 1, bins + 1)
    if denominators is None:
        return plain, np.histogram(values, plain)[0].astype(np.float64), "no held-out counts"
    n = np.asarray(denominators, dtype=np.float64)
    k = values * n
    if values.size == 0 or np.any(n < 1) or not np.allclose(k, np.round(k), atol=1e-6):
        return plain, np.histogram(values, plain)[0].astype(np.float64), "not k/n fractions"
    reference = int(np.median(n))
    group = int(np.ceil((reference + 1) / MAX_ALIGNED_BINS))
    cells = np.arange(0, reference + 2, group)
    if cells[-1] != reference + 1:
        cells = np.append(cells, reference + 1)
    edges = (cells - 0.5) / reference
    k = np.round(k)
    low = np.maximum((k - 0.5) / n, edges[0])
    high = np.minimum((k + 0.5) / n, edges[-1])
    # 0 and 1 (never / always right) are attainable for every n: kept in the end bins.
    low, high = np.where(k == 0, edges[0], low), np.where(k == 0, edges[1], high)
    low, high = np.where(k == n, edges[-2], low), np.where(k == n, edges[-1], high)
    share = np.clip((edges[np.newaxis, :] - low[:, np.newaxis]) / (high - low)[:, np.newaxis], 0, 1)
    heights = np.diff(share, axis=1).sum(axis=0)
    if np.all(n == reference):
        note = f"bins: k/{reference}" if group == 1 else f"bins: {group} of k/{reference} each"
    else:
        note = (
            f"held out {int(n.min())}-{int(n.max())}x: each k/n spread over its 1/n; "
            f"bins 1/{reference}"
        )
    return edges, heights, note


def plot_histograms(
    subset_ratios: np.ndarray,
    cscore_by_ratio: np.ndarray,
    cscore: np.ndarray | None = None,
    bins: int = 20,
    count_out_by_ratio: np.ndarray | None = None,
    num_runs_by_ratio: np.ndarray | None = None,
) -> Figure:
    """C-score histogram per subset ratio (and of the integral C-score when given).

    Args:
      subset_ratios, cscore_by_ratio: the ratios [R] and the C-score at each [R, N].
      cscore: the integral C-score [N], for a last panel; None: no such panel.
      bins: equal bins of the integral C-score, and of per-ratio panels not binned by
        their fractions (see `fraction_bins`).
      count_out_by_ratio: the runs that held each example out [R, N], to bin each ratio's
        k/n estimates by their attainable fractions; None: equal bins.
      num_runs_by_ratio: the runs at each ratio [R], for the titles.

    Returns:
      The figure; each panel's title gives the examples and runs behind it and how its
      estimates were binned.
    """
    panels = []
    for r, ratio in enumerate(subset_ratios):
        values = np.asarray(cscore_by_ratio[r], dtype=np.float64)
        defined = ~np.isnan(values)
        counts = None if count_out_by_ratio is None else count_out_by_ratio[r][defined]
        edges, heights, note = fraction_bins(values[defined], counts, bins)
        runs = "" if num_runs_by_ratio is None else f", {int(num_runs_by_ratio[r])} runs"
        title = f"subset ratio {ratio:g} ({int(defined.sum())} examples{runs})\n{note}"
        panels.append((title, edges, heights, "tab:blue"))
    if cscore is not None:
        values = np.asarray(cscore, dtype=np.float64)
        defined = values[~np.isnan(values)]
        edges = np.linspace(0, 1, bins + 1)
        title = f"integral C-score ({defined.size} examples)\nmean over the ratios; {bins} bins"
        panels.append((title, edges, np.histogram(defined, edges)[0].astype(float), "tab:green"))
    cols = min(3, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    figure = new_figure(3.4 * cols, 2.8 * rows)
    for k, (title, edges, heights, color) in enumerate(panels):
        ax = figure.add_subplot(rows, cols, k + 1)
        ax.hist(edges[:-1], bins=edges, weights=heights, color=color)
        ax.set_title(title, fontsize=7.5)
        ax.set_xlim(min(0.0, edges[0]), max(1.0, edges[-1]))
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
    subset_ratios: np.ndarray,
    cscore_by_ratio: np.ndarray,
    cscore: np.ndarray,
    num_bins: int = 10,
    runs: str | None = None,
) -> Figure:
    """Mean C-score against subset ratio, one line per bin of integral C-score.

    `runs` says what the scores rest on (`heldout.plots.captions`), for the title; the
    title also gives the examples binned, and each line's legend entry its bin's count.
    """
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
    ax.set_title(
        f"{int(counts.sum())} examples binned by integral C-score\n{runs or UNKNOWN_RUNS}",
        fontsize=9,
    )
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    figure.tight_layout()
    return figure
