"""The influence figure: test images beside the training images that influence them most.

Scores files hold influence as a dense matrix (`influence`) or as each test example's top
entries (`influence_topk_index` / `_value`); `influence_topk` reads either. Estimates of
training examples in or out of few runs are the noisiest and can be left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from heldout.plots.canvas import new_figure, show_image


def influence_topk(scores: dict[str, np.ndarray], k: int = 4, min_runs: int = 0):
    """(index, value) of the top influences from either influence format, or None.

    With `min_runs`, training examples in or out of fewer runs are left out (see
    `filter_topk`; needs the file's `influence_count_in`/`_out`).
    """
    if "influence_topk_index" in scores and "influence_topk_value" in scores:
        index, value = scores["influence_topk_index"], scores["influence_topk_value"]
    elif "influence" in scores:
        matrix = scores["influence"]
        if min_runs > 0 and "influence_count_in" in scores:
            few = (scores["influence_count_in"] < min_runs) | (
                scores["influence_count_out"] < min_runs
            )
            matrix = np.where(few[np.newaxis, :], np.nan, matrix)
        return topk_from_dense(matrix, k)
    else:
        return None
    return filter_topk(
        index, value, scores.get("influence_count_in"), scores.get("influence_count_out"), min_runs
    )


def influence_training_examples(scores: dict[str, np.ndarray], min_runs: int) -> int | None:
    """Training examples the influence figure may show: in and out of `min_runs` runs or
    more (None when the file has no counts)."""
    count_in, count_out = scores.get("influence_count_in"), scores.get("influence_count_out")
    if count_in is None or count_out is None:
        return None
    return int(np.sum((count_in >= min_runs) & (count_out >= min_runs)))


def topk_from_dense(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest (NaN-free) influences per test example: (index, value) [N_test, k]."""
    values = np.where(np.isnan(matrix), -np.inf, matrix)
    k = min(k, values.shape[1])
    part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(values, part, axis=1), axis=1, kind="stable")
    index = np.take_along_axis(part, order, axis=1)
    return index.astype(np.int64), np.take_along_axis(matrix, index, axis=1)


def filter_topk(
    topk_index: np.ndarray,
    topk_value: np.ndarray,
    count_in: np.ndarray | None,
    count_out: np.ndarray | None,
    min_runs: int,
):
    """Drops (sets to -1 / NaN, keeping order) entries whose training example was in, or
    held out of, fewer than `min_runs` runs: their estimates are the noisiest."""
    index, value = topk_index.copy(), topk_value.astype(np.float64)
    if count_in is None or count_out is None or min_runs <= 0:
        return index, value
    valid = index >= 0
    safe = np.where(valid, index, 0)
    keep = valid & (count_in[safe] >= min_runs) & (count_out[safe] >= min_runs)
    index[~keep] = -1
    value[~keep] = np.nan
    # Move the kept entries to the front of each row, in their order.
    order = np.argsort(~keep, axis=1, kind="stable")
    return np.take_along_axis(index, order, axis=1), np.take_along_axis(value, order, axis=1)


def choose_influence_rows(
    topk_index: np.ndarray,
    topk_value: np.ndarray,
    test_labels: np.ndarray,
    train_labels: np.ndarray,
    rows: int,
    survives: np.ndarray | None = None,
) -> np.ndarray:
    """Test examples whose most influential training example is of their own class,
    strongest first (then the others, strongest first); with `survives` (bool [N_test, k]),
    the test examples with a pair that survives FDR control come before all others.

    With few runs the largest estimates are mostly noise, and noise pairs have random
    classes; a strong same-class pair is the kind the published figures show.
    `topk_value` is what "strongest" means: the estimates, or their lower limits.
    """
    first = topk_index[:, 0]
    strongest = np.where(np.isnan(topk_value[:, 0]) | (first < 0), -np.inf, topk_value[:, 0])
    same = (first >= 0) & (train_labels[np.maximum(first, 0)] == test_labels)
    any_survives = np.zeros(first.size, bool) if survives is None else survives.any(axis=1)
    order = np.lexsort((np.arange(first.size), -strongest, ~same, ~any_survives))
    return order[:rows]


LINE_HEIGHT = 0.125  # inches per line of the heading and note at the top
GREYED_ALPHA = 0.35  # picks that do not survive FDR control


def plot_influence(
    topk_index: np.ndarray,
    topk_value: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    rows: int = 6,
    influential: int = 4,
    random_same_class: int = 5,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    test_rows: np.ndarray | None = None,
    note: str | None = None,
    left_out: str = "the others left out",
    q_value: np.ndarray | None = None,
    lower: np.ndarray | None = None,
    fdr: float = 0.05,
    heading: str | None = None,
) -> Figure:
    """Rows: a test image, its most influential training images (with the values), and
    random training images of its class for comparison.

    Args:
      topk_index, topk_value: each test example's top influences [N_test, K] (-1 / NaN:
        none), e.g. from `influence_topk`.
      test_images, test_labels, train_images, train_labels: the two splits.
      rows: test examples shown (fewer when the split has fewer; the heading says so).
      influential: top influences shown per row (at most K: the file keeps no more).
      random_same_class: random training images of the test example's class per row.
      class_names: names of the classes (default: the ids).
      seed: fixes the random training images.
      test_rows: the test examples to show (default: `choose_influence_rows`).
      note: what the estimates rest on, at the top.
      left_out: why a row has fewer influences than panels (said in the first empty one).
      q_value: each pick's q-value [N_test, K] (NaN: unknown, above `fdr`), e.g. from
        `heldout.plots.influence_evidence.influence_picks`; written beside each value, and
        the picks above `fdr` greyed. None: no q-values known.
      lower: each pick's lower interval limit [N_test, K], written beside its value.
      fdr: the rate of the selection behind `q_value`.
      heading: what survives FDR control, in black above the note.

    Returns:
      The figure. No panel is blank without a reason written in it.
    """
    if test_rows is None:
        ranked_by = topk_value if lower is None else lower
        test_rows = choose_influence_rows(
            topk_index,
            ranked_by,
            test_labels,
            train_labels,
            rows,
            None if q_value is None else _survives(q_value[:, :influential], fdr),
        )
    kept = min(influential, topk_index.shape[1])
    rng = np.random.default_rng(seed)
    columns = 1 + kept + 1 + random_same_class
    text_lines = sum(text.count("\n") + 1 for text in (heading, note) if text)
    headings_bottom = 0.04 + LINE_HEIGHT * text_lines + 0.32  # the group headings above it
    title_lines = 2 + (q_value is not None)  # a pick's title: value (, q), class
    header = headings_bottom + 0.12 + 0.1 * title_lines
    height = 1.25 * len(test_rows) + header
    figure = new_figure(1.05 * (columns - 0.7), height)
    # A narrow spacer column separates the influences from the random comparison images.
    grid = figure.add_gridspec(
        len(test_rows),
        columns,
        width_ratios=[1.0] * (1 + kept) + [0.3] + [1.0] * random_same_class,
        wspace=0.1,
        hspace=0.35 + 0.1 * title_lines,
        left=0.02,
        right=0.98,
        top=1 - header / height,
        bottom=0.1 / height,
    )
    names = class_names or [
        str(c) for c in range(int(max(train_labels.max(), test_labels.max())) + 1)
    ]
    for row, t in enumerate(test_rows):
        ax = figure.add_subplot(grid[row, 0])
        show_image(ax, test_images[t])
        ax.set_title(f"test {t}\n{names[test_labels[t]]}", fontsize=6, pad=2)
        shown = 0
        for k in range(kept):
            ax = figure.add_subplot(grid[row, 1 + k])
            if topk_index[t, k] >= 0 and np.isfinite(topk_value[t, k]):
                j = topk_index[t, k]
                show_image(ax, train_images[j])
                q = None if q_value is None else q_value[t, k]
                low = None if lower is None else lower[t, k]
                _pick_title(ax, topk_value[t, k], low, q, fdr, names[train_labels[j]])
                shown += 1
            else:
                _empty(ax, f"no further pair:\n{left_out}" if k == shown else "")
        same_class = np.flatnonzero(train_labels == test_labels[t])
        picks = rng.choice(same_class, size=min(random_same_class, same_class.size), replace=False)
        for k in range(random_same_class):
            ax = figure.add_subplot(grid[row, 2 + kept + k])
            if k < picks.size:
                show_image(ax, train_images[picks[k]])
                ax.set_title(f"train {picks[k]}", fontsize=6, pad=2)
            else:
                _empty(
                    ax,
                    f"its class has\n{same_class.size} training\nimages" if k == picks.size else "",
                )
    heading_y = 1 - headings_bottom / height
    shown_tests = f"test image\n{len(test_rows)} of {test_labels.shape[0]}"
    fewer = "" if kept == influential else f" (the file keeps {kept} per test image)"
    for text, first, last in (
        (shown_tests, 0, 0),
        ("most influential training images" + fewer, 1, kept),
        ("random training images of its class", 2 + kept, 1 + kept + random_same_class),
    ):
        box_first = grid[0, first].get_position(figure)
        box_last = grid[0, last].get_position(figure)
        center = (box_first.x0 + box_last.x1) / 2
        figure.text(center, heading_y, text, ha="center", va="bottom", fontsize=9)
    top = 1 - 0.04 / height
    if heading:
        figure.text(0.5, top, heading, ha="center", va="top", fontsize=7.5)
        top -= LINE_HEIGHT * (heading.count("\n") + 1) / height
    if note:
        figure.text(0.5, top, note, ha="center", va="top", fontsize=7, color="0.3")
    return figure


def _pick_title(ax, value, lower, q, fdr: float, name: str) -> None:
    """'infl 0.73' (', low 0.21'), its q-value (when known), its class; a pick that does
    not survive FDR control is greyed."""
    text = f"infl {value:.2f}" + ("" if lower is None or np.isnan(lower) else f", low {lower:.2f}")
    survives = q is None or bool(_survives(q, fdr))
    if q is not None:
        text += "\n" + (f"q > {fdr:g}" if np.isnan(q) else f"q {q:.3g}")
    ax.set_title(f"{text}\n{name}", fontsize=6, pad=2, color="black" if survives else "0.5")
    if not survives:
        for image in ax.images:
            image.set_alpha(GREYED_ALPHA)


def _empty(ax, reason: str) -> None:
    """A panel with no image: no frame, and the reason (if any) in small grey text."""
    ax.axis("off")
    if reason:
        ax.text(
            0.5,
            0.5,
            reason,
            ha="center",
            va="center",
            fontsize=6,
            color="0.35",
            transform=ax.transAxes,
        )


def _survives(q_value, fdr: float):
    """Whether each q-value is at or below the FDR (NaN: unknown, above it)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(q_value) <= fdr
