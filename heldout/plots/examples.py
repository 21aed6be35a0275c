"""The examples figure: per class, the training images of highest and lowest C-score.

The images a C-score ranks at either end show what it measures: typical images at the
top, odd and mislabeled ones at the bottom of their class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from heldout.plots.canvas import new_figure, show_image


def ranked_by_class(cscore: np.ndarray, labels: np.ndarray, count: int):
    """Per class: (indices of the `count` highest, of the `count` lowest) defined C-scores.

    Highest first, lowest first; examples never held out (NaN) are left out; ties broken
    by index so the choice is reproducible.
    """
    result = {}
    for c in np.unique(labels):
        members = np.flatnonzero((labels == c) & ~np.isnan(cscore))
        order = members[np.lexsort((members, cscore[members]))]  # ascending score
        result[int(c)] = (order[::-1][:count], order[:count])
    return result


def plot_examples(
    cscore: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    per_class: int = 10,
) -> Figure:
    """Per class (rows): the `per_class` highest and lowest C-score training images."""
    cscore = np.asarray(cscore, dtype=np.float64)
    ranked = ranked_by_class(cscore, labels, per_class)
    classes = sorted(ranked)
    names = class_names or [str(c) for c in range(max(classes) + 1)]
    columns = 2 * per_class + 1  # a blank column between the two halves
    height = 0.72 * len(classes) + 0.8
    figure = new_figure(0.62 * columns + 1.2, height)
    # Headroom in inches, not a fraction: with few classes a fractional top clipped the
    # headings above the first row.
    top = 1 - 0.45 / height
    grid = figure.add_gridspec(
        len(classes), columns, wspace=0.06, hspace=0.32, left=0.1, right=0.99, top=top, bottom=0.02
    )
    for row, c in enumerate(classes):
        high, low = ranked[c]
        for half, (indices, offset) in enumerate(((high, 0), (low, per_class + 1))):
            for k in range(per_class):
                ax = figure.add_subplot(grid[row, offset + k])
                if k < indices.size:
                    show_image(ax, images[indices[k]])
                    ax.set_title(f"{cscore[indices[k]]:.2f}", fontsize=6, pad=1)
                else:
                    ax.axis("off")
                if half == 0 and k == 0:
                    ax.set_ylabel(names[c], rotation=0, ha="right", va="center", fontsize=8)
    heading_y = 1 - 0.06 / height
    for text, center in (
        ("highest C-score", per_class / 2),
        ("lowest C-score", per_class + 1 + per_class / 2),
    ):
        figure.text(
            0.1 + 0.89 * center / columns, heading_y, text, ha="center", va="top", fontsize=11
        )
    return figure
