"""The figures of a scores file: examples ranked by C-score, histograms, bins, influence.

Each `plot_*` function takes arrays and returns a matplotlib `Figure`; `draw_figures`
draws every figure a scores file allows, `save_figure` writes one atomically (a temporary
file renamed into place, so a reader never sees half a PNG) and `write_figures` does both,
as PDF and PNG. Figures are drawn
with matplotlib's object-oriented API on the Agg canvas (no pyplot, no global backend), so
this works on headless machines and does not disturb a caller's matplotlib state.

Inputs are the keys written by `tools/compute_scores.py` (`subset_ratios`, `cscore`,
`cscore_by_ratio`, and `influence` or `influence_topk_index` + `influence_topk_value`) and
the dataset's images and labels in the experiment's index order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from heldout._core.atomic import atomic_open
from heldout._core.npz import load_npz
from heldout.errors import ScoresFileError, UsageError  # noqa: F401 - re-exported

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
      ScoresFileError: the file is missing, empty, truncated or not an `.npz`; the message
        starts with the file.
    """
    return load_npz(path, error=ScoresFileError, what="a scores .npz file (compute_scores)")


# ------------------------------------------------------------------------------ helpers


def _show(ax, image: np.ndarray) -> None:
    """One image without axes; grayscale images drawn light-on-dark as in the datasets."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0, vmax=255 if image.dtype == np.uint8 else 1)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


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


# ------------------------------------------------------------------------------ figures


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
    figure = _new_figure(0.62 * columns + 1.2, height)
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
                    _show(ax, images[indices[k]])
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
    figure = _new_figure(3.4 * cols, 2.6 * rows)
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
    figure = _new_figure(6.0, 4.2)
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
) -> np.ndarray:
    """Test examples whose most influential training example is of their own class,
    strongest first (then the others, strongest first).

    With few runs the largest estimates are mostly noise, and noise pairs have random
    classes; a strong same-class pair is the kind the published figures show.
    """
    first = topk_index[:, 0]
    strongest = np.where(np.isnan(topk_value[:, 0]) | (first < 0), -np.inf, topk_value[:, 0])
    same = (first >= 0) & (train_labels[np.maximum(first, 0)] == test_labels)
    order = np.lexsort((np.arange(first.size), -strongest, ~same))
    return order[:rows]


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
) -> Figure:
    """Rows: a test image, its most influential training images (with the values), and
    random training images of its class for comparison. `note` goes under the title."""
    if test_rows is None:
        test_rows = choose_influence_rows(topk_index, topk_value, test_labels, train_labels, rows)
    rng = np.random.default_rng(seed)
    columns = 1 + influential + 1 + random_same_class
    figure = _new_figure(1.05 * columns, 1.25 * len(test_rows) + 0.5)
    grid = figure.add_gridspec(
        len(test_rows),
        columns,
        wspace=0.1,
        hspace=0.45,
        left=0.02,
        right=0.98,
        top=0.9,
        bottom=0.02,
    )
    names = class_names or [
        str(c) for c in range(int(max(train_labels.max(), test_labels.max())) + 1)
    ]
    for row, t in enumerate(test_rows):
        ax = figure.add_subplot(grid[row, 0])
        _show(ax, test_images[t])
        ax.set_title(f"test {t}\n{names[test_labels[t]]}", fontsize=6, pad=2)
        for k in range(influential):
            ax = figure.add_subplot(grid[row, 1 + k])
            if k < topk_index.shape[1] and np.isfinite(topk_value[t, k]):
                j = topk_index[t, k]
                _show(ax, train_images[j])
                ax.set_title(
                    f"infl {topk_value[t, k]:.2f}\n{names[train_labels[j]]}", fontsize=6, pad=2
                )
            else:
                ax.axis("off")
        same_class = np.flatnonzero(train_labels == test_labels[t])
        picks = rng.choice(same_class, size=min(random_same_class, same_class.size), replace=False)
        for k, j in enumerate(picks):
            ax = figure.add_subplot(grid[row, 2 + influential + k])
            _show(ax, train_images[j])
            ax.set_title(f"train {j}", fontsize=6, pad=2)
    figure.text(0.02, 0.96, "test image", fontsize=9)
    figure.text(
        (1 + influential / 2) / columns,
        0.96,
        "most influential training images",
        ha="center",
        fontsize=9,
    )
    figure.text(
        (2 + influential + random_same_class / 2) / columns,
        0.96,
        "random training images of its class",
        ha="center",
        fontsize=9,
    )
    if note:
        figure.text(0.5, 0.995, note, ha="center", va="top", fontsize=7, color="0.3")
    return figure


def plot_cscore_histogram(cscore: np.ndarray, bins: int = 30, title: str | None = None) -> Figure:
    """Histogram of integral C-scores (the paper's Figure 3, left: 30 bins on [0, 1])."""
    values = np.asarray(cscore, dtype=np.float64)
    defined = values[~np.isnan(values)]
    figure = _new_figure(5.0, 3.4)
    ax = figure.add_subplot(1, 1, 1)
    ax.hist(defined, bins=np.linspace(0, 1, bins + 1), color="tab:green")
    ax.set_xlim(0, 1)
    ax.set_xlabel("integral C-score")
    ax.set_ylabel("examples")
    ax.set_title(title or f"C-scores of {defined.size} examples ({bins} bins)", fontsize=10)
    figure.tight_layout()
    return figure


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
    figure = _new_figure(5.6, 4.4)
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
    from heldout._core.ranks import average_ranks

    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    both = ~np.isnan(ours) & ~np.isnan(reference)
    a, b = ours[both], reference[both]
    figure = _new_figure(10.0, 4.2)
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


# ------------------------------------------------------------------------------ all


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


def draw_figures(
    scores: dict[str, np.ndarray],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    min_influence_runs: int = 5,
) -> dict[str, Figure]:
    """Every figure the scores allow, by name (`FIGURE_NAMES`), drawn but not saved.

    `train_labels` should be the labels the models were trained on (for an experiment with
    corrupted labels: `heldout.datasets.relabeled.experiment_labels`), so that a mislabeled
    image shows up among the low C-scores of the class it was labeled as. The influence figure
    needs influence scores and the test split; it leaves out training examples that were
    in or out of fewer than `min_influence_runs` runs. The band figure (`cscore_bands`)
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
    figures = {
        "examples": plot_examples(cscore, train_images, train_labels, class_names),
        "histograms": plot_histograms(scores["subset_ratios"], scores["cscore_by_ratio"], cscore),
        "cscore_bins": plot_cscore_bins(scores["subset_ratios"], scores["cscore_by_ratio"], cscore),
    }
    from heldout.plots import (
        uncertainty as uncertainty_plots,  # draws with this module's conventions
    )

    if all(key in scores for key in uncertainty_plots.BAND_KEYS):
        figures["cscore_bands"] = uncertainty_plots.plot_cscore_bands(
            cscore,
            scores["cscore_ci_low"],
            scores["cscore_ci_high"],
            labels=train_labels,
            class_names=class_names,
            confidence=float(scores["confidence"]) if "confidence" in scores else None,
            num_runs=uncertainty_plots.total_runs(scores),
        )
    top = influence_topk(scores, min_runs=min_influence_runs)
    if top is not None and test_images is not None and test_labels is not None:
        runs = int(scores.get("influence_num_runs", 0))
        ratio = scores.get("score_subset_ratio")
        note = (
            f"influence from {runs} runs"
            + (f" at subset ratio {float(ratio):g}" if ratio is not None else "")
            + f"; training examples in or out of fewer than {min_influence_runs} runs "
            "left out. With few runs the largest estimates are mostly noise."
        )
        figures["influence"] = plot_influence(
            top[0],
            top[1],
            test_images,
            test_labels,
            train_images,
            train_labels,
            class_names=class_names,
            note=note,
        )
    return figures


def check_formats(formats: Sequence[str]) -> list[str]:
    """The formats, checked against what matplotlib can write (before anything is drawn).

    Raises:
      UsageError: a format matplotlib cannot write, or none at all.
    """
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    formats = [fmt.strip().lower().lstrip(".") for fmt in formats if fmt.strip()]
    unknown = [fmt for fmt in formats if fmt not in supported]
    if unknown or not formats:
        raise UsageError(
            f"cannot write figures as {unknown or 'no format'}; choose from "
            f"{', '.join(sorted(supported))}"
        )
    return formats


def save_figure(
    figure: Figure, path_stem: str | os.PathLike, formats: Sequence[str], dpi: int = 150
) -> list[Path]:
    """Writes `figure` as `<path_stem>.<format>` for each format, each one atomically.

    Each file is drawn into a hidden temporary file beside its final name and renamed
    when complete (`heldout._core.atomic.atomic_open`): an interrupted run leaves the previous
    figure or the new one, never a truncated file, and the file gets the umask's mode.
    """
    written = []
    for fmt in check_formats(formats):
        path = Path(f"{os.fspath(path_stem)}.{fmt}")
        with atomic_open(path, "wb") as f:
            figure.savefig(f, format=fmt, dpi=dpi)
        written.append(path)
    return written


def write_figures(
    scores: dict[str, np.ndarray],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    output_dir: str | os.PathLike,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    formats: Sequence[str] = ("pdf", "png"),
    dpi: int = 150,
    min_influence_runs: int = 5,
) -> list[Path]:
    """Draws every figure the scores allow into `output_dir`; returns the files written.

    See `draw_figures` for the inputs and `save_figure` for how files are written.

    Raises:
      UsageError: an unknown format (checked before anything is drawn or written).
      ScoresFileError: see `draw_figures`.
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
    )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in figures.items():
        written += save_figure(figure, output_dir / name, formats, dpi)
    return written
