"""The proxies' figure: rho against epoch (the paper's Figures 8 and 9b) and rank densities.

Top: Spearman rho with the reference C-score against the epoch, one line per per-epoch
proxy (each proxy computed from the first e epochs; hidden densities at epoch e). Below:
per proxy, the density of examples by proxy rank and C-score rank (hexagons on one log
colour scale; a diagonal means the same ordering). Proxies are oriented
so that higher means more regular (`heldout.proxies.compute.oriented`).
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from heldout._core.ranks import average_ranks
from heldout.plots.canvas import new_figure

FORMATS = (".png", ".pdf")  # the suffixes a --figure of this figure may have
DPI = 110  # the resolution this (large) figure is written at: `save_figure(..., dpi=DPI)`


def plot_proxies(
    proxies: dict[str, np.ndarray],
    reference: np.ndarray,
    rho_by_epoch: dict[str, np.ndarray],
    rho: dict[str, float],
    title: str = "",
    runs: str | None = None,
) -> Figure:
    """The figure of the module docstring.

    Args:
      proxies: name -> oriented proxy values [N].
      reference: C-scores [N] (NaN entries are left out).
      rho_by_epoch: name -> rho per epoch [E] (per-epoch proxies only).
      rho: name -> overall rho (in the scatter titles).
      title: the figure's title.
      runs: what the reference C-scores rest on (runs per ratio), for the title.

    Returns:
      The figure: the rho curves (axes 0), one rank density per proxy (hexagons of every
      example with a C-score, one log colour scale), and the colour bar (last axes).
    """
    names = list(proxies)
    cols = 4
    rows = math.ceil(len(names) / cols)
    figure = new_figure(3.2 * cols, 3.6 + 2.9 * rows, layout="constrained")
    grid = figure.add_gridspec(rows + 1, cols, height_ratios=[1.35] + [1.0] * rows)
    top = figure.add_subplot(grid[0, :])
    palette = colormaps["tab20"].colors  # 16 proxies: no colour used twice
    for k, (name, curve) in enumerate(rho_by_epoch.items()):
        epochs = np.arange(1, len(curve) + 1)
        shown = np.isfinite(curve)  # hidden densities may skip epochs
        epochs, curve = epochs[shown], np.asarray(curve)[shown]
        style = "--" if name.startswith("kde_") else "-"
        color = palette[k % len(palette)]
        top.plot(epochs, curve, style, color=color, marker="o", markersize=3, label=name)
    top.set_xlabel("epoch (proxy from the first e epochs)")
    top.set_ylabel("Spearman rho with the C-score")
    top.grid(alpha=0.3)
    top.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    if rho_by_epoch:
        # beneath the axes: beside them it widened the figure and pushed the colour bar away
        top.legend(fontsize=7, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    defined = ~np.isnan(reference)
    index = np.flatnonzero(defined)
    counts = f"rho and rank densities over the {index.size} examples with a C-score"
    if runs:
        counts += f" ({runs})"
    top.set_title(f"{title or 'proxies against the holdout C-score'}\n{counts}", fontsize=10)
    panels = []
    for k, name in enumerate(names):
        ax = figure.add_subplot(grid[1 + k // cols, k % cols])
        reference_rank, proxy_rank = rank_pairs(reference, proxies[name], index)
        hexes = ax.hexbin(
            reference_rank, proxy_rank, gridsize=30, extent=(0, 1, 0, 1), mincnt=1, cmap="viridis"
        )
        panels.append((ax, hexes))
        ax.plot([0, 1], [0, 1], color="0.4", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}: rho {rho.get(name, float('nan')):.3f}", fontsize=8)
        ax.tick_params(labelsize=7)
        if k % cols == 0:
            ax.set_ylabel("proxy rank", fontsize=8)
        if k // cols == rows - 1:
            ax.set_xlabel("C-score rank", fontsize=8)
    densest = max(
        (float(np.ma.max(h.get_array())) for _, h in panels if h.get_array().size), default=1.0
    )
    norm = LogNorm(vmin=1, vmax=max(densest, 2.0))
    for _, hexes in panels:
        hexes.set_norm(norm)
    if panels:
        figure.colorbar(
            panels[0][1],
            ax=[ax for ax, _ in panels],
            label="examples per hexagon (log scale)",
            shrink=0.8,
        )
    return figure


def rank_pairs(
    reference: np.ndarray, values: np.ndarray, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(C-score rank, proxy rank) of the examples `index`, as fractions; ties averaged."""
    values = np.asarray(values, np.float64)
    reference_rank = average_ranks(reference[index]) / index.size
    proxy_rank = average_ranks(values[index]) / index.size
    return reference_rank, proxy_rank
