"""The examples figure: per class, the training images of highest and lowest C-score.

The images a C-score ranks at either end show what it measures: typical images at the
top, odd and mislabeled ones at the bottom of their class. C-scores from a few runs tie
in large blocks (often thousands at 1.00), so the images shown from a tied block are drawn
at random (with a seed) and the figure says how many were tied and drawn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from heldout.plots.canvas import new_figure, show_image
from heldout.plots.captions import UNKNOWN_RUNS

ROW_HEIGHT = 0.9  # inches per class row: images, their scores, the line on ties
HEADER_HEIGHT = 0.7  # inches above the rows: the caption and the two headings
COLUMN_WIDTH = 0.62  # inches per image column


@dataclasses.dataclass(frozen=True)
class Pick:
    """The examples shown at one end of a class, and the tie they were drawn from.

    `indices` are most extreme first; `tied` examples share the score `value` at the cut,
    of which `drawn` were drawn at random (both 0 when the cut splits no tie).
    """

    indices: np.ndarray
    tied: int = 0
    drawn: int = 0
    value: float = float("nan")


def pick_extreme(
    members: np.ndarray, values: np.ndarray, count: int, rng: np.random.Generator, highest: bool
) -> Pick:
    """The `count` members of highest (or lowest) value, ties at the cut drawn by `rng`.

    Examples beyond the cut are all shown, most extreme first; where the cut falls inside
    a block of equal values, the places left are filled by a random draw from the block
    (in index order), so the pick says nothing the scores do not.
    """
    keys = -values[members] if highest else values[members]
    order = members[np.argsort(keys, kind="stable")]
    if order.size <= count:
        return Pick(order)
    cut = values[order[count - 1]]
    sure = order[:count][values[order[:count]] != cut]
    tied = members[values[members] == cut]
    places = count - sure.size
    if tied.size == places:
        return Pick(order[:count])
    drawn = np.sort(rng.choice(tied, places, replace=False))
    return Pick(np.concatenate([sure, drawn]), int(tied.size), int(places), float(cut))


def ranked_by_class(cscore: np.ndarray, labels: np.ndarray, count: int, seed: int = 0):
    """Per class: (`Pick` of the `count` highest, of the `count` lowest) defined C-scores.

    Examples never held out (NaN) are left out; ties at a cut are drawn at random from
    one generator seeded with `seed`, class by class, highest before lowest.
    """
    rng = np.random.default_rng(seed)
    result = {}
    for c in np.unique(labels):
        members = np.flatnonzero((labels == c) & ~np.isnan(cscore))
        high = pick_extreme(members, cscore, count, rng, highest=True)
        low = pick_extreme(members, cscore, count, rng, highest=False)
        result[int(c)] = (high, low)
    return result


def tie_note(pick: Pick) -> str:
    """'4321 tied at 1.00; 10 drawn at random', or '' when no tie was drawn from."""
    if not pick.drawn:
        return ""
    return f"{pick.tied} tied at {pick.value:.2f}; {pick.drawn} drawn at random"


def plot_examples(
    cscore: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    per_class: int = 10,
    runs: str | None = None,
    seed: int = 0,
) -> Figure:
    """Per class (rows): the `per_class` highest and lowest C-score training images.

    Args:
      cscore: C-scores [N] (NaN: never held out, left out).
      images, labels: the training images and labels, in the scores' order.
      class_names: names of the classes (default: the ids).
      per_class: images at each end of a class.
      runs: what the C-scores rest on, for the caption (`heldout.plots.captions`).
      seed: fixes the draw among tied scores.

    Returns:
      The figure: a caption with the examples and runs, the two headings, and per class
      the images with their scores, and under each half the tie drawn from, if any.
    """
    cscore = np.asarray(cscore, dtype=np.float64)
    ranked = ranked_by_class(cscore, labels, per_class, seed)
    classes = sorted(ranked)
    names = class_names or [str(c) for c in range(max(classes) + 1)]
    columns = 2 * per_class + 1  # a blank column between the two halves
    height = ROW_HEIGHT * len(classes) + HEADER_HEIGHT
    figure = new_figure(COLUMN_WIDTH * columns + 1.2, height)
    # Headroom and notes in inches, not fractions, so few classes clip nothing.
    top = 1 - HEADER_HEIGHT / height
    grid = figure.add_gridspec(
        len(classes),
        columns,
        wspace=0.06,
        hspace=0.62,
        left=0.1,
        right=0.99,
        top=top,
        bottom=0.2 / height,
    )
    for row, c in enumerate(classes):
        for half, (pick, offset) in enumerate(zip(ranked[c], (0, per_class + 1), strict=True)):
            indices = pick.indices
            for k in range(per_class):
                ax = figure.add_subplot(grid[row, offset + k])
                if k < indices.size:
                    show_image(ax, images[indices[k]])
                    ax.set_title(f"{cscore[indices[k]]:.2f}", fontsize=7, pad=1)
                else:
                    ax.axis("off")
                if half == 0 and k == 0:
                    ax.set_ylabel(names[c], rotation=0, ha="right", va="center", fontsize=8)
                if k == 0:
                    first = ax
            note = tie_note(pick)
            if note:
                box = first.get_position()
                figure.text(
                    0.1 + 0.89 * (offset + per_class / 2) / columns,
                    box.y0 - 0.03 / height,
                    note,
                    ha="center",
                    va="top",
                    fontsize=7,
                    color="0.25",
                )
    defined = int(np.sum(~np.isnan(cscore)))
    caption = (
        f"{defined} training examples with a C-score in {len(classes)} classes; "
        f"{runs or UNKNOWN_RUNS}; ties at a cut drawn at random (seed {seed})"
    )
    figure.text(0.5, 1 - 0.05 / height, caption, ha="center", va="top", fontsize=8)
    heading_y = 1 - 0.3 / height
    for text, center in (
        ("highest C-score", per_class / 2),
        ("lowest C-score", per_class + 1 + per_class / 2),
    ):
        figure.text(
            0.1 + 0.89 * center / columns, heading_y, text, ha="center", va="top", fontsize=11
        )
    return figure
