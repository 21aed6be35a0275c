"""Figures from a scores file: the helpers' arithmetic, and every file written."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from heldout.plots import scores as plots

NUM_TRAIN, NUM_TEST, NUM_CLASSES = 300, 40, 3


@pytest.fixture()
def data():
    rng = np.random.default_rng(0)
    train_labels = np.arange(NUM_TRAIN) % NUM_CLASSES
    test_labels = np.arange(NUM_TEST) % NUM_CLASSES
    train_images = rng.integers(0, 256, (NUM_TRAIN, 28, 28, 1), dtype=np.uint8)
    test_images = rng.integers(0, 256, (NUM_TEST, 28, 28, 1), dtype=np.uint8)
    ratios = np.array([0.3, 0.5, 0.7])
    by_ratio = rng.random((3, NUM_TRAIN))
    by_ratio[0, :5] = np.nan  # never held out at one ratio
    cscore = np.nanmean(by_ratio, axis=0)
    cscore[7] = np.nan  # never held out at all
    influence = rng.normal(0, 0.1, (NUM_TEST, NUM_TRAIN)).astype(np.float32)
    scores = {
        "subset_ratios": ratios,
        "cscore": cscore,
        "cscore_by_ratio": by_ratio,
        "influence": influence,
        "influence_num_runs": np.int64(16),
        "influence_count_in": np.full(NUM_TRAIN, 10, np.int32),
        "influence_count_out": np.full(NUM_TRAIN, 6, np.int32),
        "score_subset_ratio": np.float64(0.7),
        "cscore_ci_low": np.clip(cscore - 0.1, 0, 1),
        "cscore_ci_high": np.clip(cscore + 0.1, 0, 1),
        "confidence": np.float64(0.95),
    }
    return scores, train_images, train_labels, test_images, test_labels


def test_ranked_by_class_skips_nan_and_orders():
    cscore = np.array([0.5, np.nan, 0.9, 0.1, 0.9, 0.3])
    labels = np.array([0, 0, 0, 0, 1, 1])
    ranked = plots.ranked_by_class(cscore, labels, 2)
    high, low = ranked[0]
    assert high.tolist() == [2, 0] and low.tolist() == [3, 0]
    assert ranked[1][0].tolist() == [4, 5]


def test_bin_means():
    cscore = np.array([0.05, 0.15, 0.95, 1.0, np.nan])
    by_ratio = np.array([[0.0, 0.2, 0.9, 1.0, 0.5], [0.1, np.nan, 1.0, 1.0, 0.5]])
    edges, counts, means = plots.bin_means(cscore, by_ratio, num_bins=10)
    assert counts.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    np.testing.assert_allclose(means[0], [0.0, 0.1])
    np.testing.assert_allclose(means[1][0], 0.2)
    assert np.isnan(means[1][1]) and np.isnan(means[2]).all()
    np.testing.assert_allclose(means[9], [0.95, 1.0])


def test_topk_from_dense_and_filter():
    matrix = np.array([[0.1, np.nan, 0.5, 0.3], [0.2, 0.9, -0.1, 0.0]], np.float32)
    index, value = plots.topk_from_dense(matrix, 2)
    assert index.tolist() == [[2, 3], [1, 0]]
    np.testing.assert_allclose(value, [[0.5, 0.3], [0.9, 0.2]])
    kept_index, kept_value = plots.filter_topk(
        index, value, count_in=np.array([9, 9, 9, 9]), count_out=np.array([9, 1, 9, 9]), min_runs=2
    )
    assert kept_index.tolist() == [[2, 3], [0, -1]]
    assert np.isnan(kept_value[1, 1])


def test_influence_rows_prefer_same_class():
    index = np.array([[5], [6], [7]])
    value = np.array([[0.9], [0.5], [0.7]])
    rows = plots.choose_influence_rows(
        index, value, np.array([0, 1, 1]), np.array([0] * 5 + [1, 1, 1]), 3
    )
    assert rows.tolist() == [2, 1, 0]  # test 0's strongest pair is of another class


def _shown(ax) -> np.ndarray:
    """The pixels of the image placed in a panel (as given to imshow)."""
    (image,) = ax.images
    return np.asarray(image.get_array())


def test_examples_figure_shows_the_ranked_images(data):
    scores, train_images, train_labels, _, _ = data
    figure = plots.plot_examples(scores["cscore"], train_images, train_labels, ["a", "b", "c"])
    per_class = 10
    assert len(figure.axes) == NUM_CLASSES * 2 * per_class  # rows x (highest + lowest)
    ranked = plots.ranked_by_class(scores["cscore"], train_labels, per_class)
    for row, c in enumerate(sorted(ranked)):
        high, low = ranked[c]
        panels = figure.axes[row * 2 * per_class : (row + 1) * 2 * per_class]
        for ax, index in zip(panels, np.concatenate([high, low]), strict=True):
            np.testing.assert_array_equal(_shown(ax), train_images[index, :, :, 0])
            assert ax.get_title() == f"{scores['cscore'][index]:.2f}"
        assert panels[0].get_ylabel() == "abc"[c]
    assert not np.isnan(scores["cscore"][figure_indices(ranked)]).any()


def figure_indices(ranked) -> np.ndarray:
    return np.concatenate([np.concatenate(pair) for pair in ranked.values()])


def test_histograms_and_bins_show_the_counts(data):
    scores, *_ = data
    by_ratio, cscore = scores["cscore_by_ratio"], scores["cscore"]
    figure = plots.plot_histograms(scores["subset_ratios"], by_ratio, cscore)
    assert len(figure.axes) == len(scores["subset_ratios"]) + 1  # one per ratio + integral
    for ax, values in zip(figure.axes, [*by_ratio, cscore], strict=True):
        defined = int((~np.isnan(values)).sum())
        assert len(ax.patches) == 20
        assert sum(bar.get_height() for bar in ax.patches) == defined
        assert f"({defined} examples)" in ax.get_title()
    figure = plots.plot_cscore_bins(scores["subset_ratios"], by_ratio, cscore)
    (ax,) = figure.axes
    _, counts, means = plots.bin_means(cscore, by_ratio)
    assert len(ax.lines) == int((counts > 0).sum())
    for line, b in zip(ax.lines, np.flatnonzero(counts), strict=True):
        np.testing.assert_allclose(line.get_ydata(), means[b])
        assert line.get_label().endswith(f"n={counts[b]}")


def test_influence_figure_shows_each_test_image_and_its_top_training_images(data):
    scores, train_images, train_labels, test_images, test_labels = data
    index, value = plots.topk_from_dense(scores["influence"], 4)
    figure = plots.plot_influence(
        index, value, test_images, test_labels, train_images, train_labels, rows=3
    )
    rows = plots.choose_influence_rows(index, value, test_labels, train_labels, 3)
    per_row = 1 + 4 + 5  # test image, most influential, random of its class
    assert len(figure.axes) == 3 * per_row
    for row, t in enumerate(rows):
        panels = figure.axes[row * per_row : (row + 1) * per_row]
        np.testing.assert_array_equal(_shown(panels[0]), test_images[t, :, :, 0])
        assert panels[0].get_title().startswith(f"test {t}\n")
        for k in range(4):
            np.testing.assert_array_equal(_shown(panels[1 + k]), train_images[index[t, k], :, :, 0])
        for ax in panels[5:]:
            j = int(ax.get_title().split()[1])  # "train <j>"
            assert train_labels[j] == test_labels[t]
            np.testing.assert_array_equal(_shown(ax), train_images[j, :, :, 0])


def test_written_files_are_the_drawn_figures(tmp_path, data):
    scores, train_images, train_labels, test_images, test_labels = data
    figures = plots.draw_figures(
        scores,
        train_images,
        train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=["a", "b", "c"],
    )
    assert sorted(figures) == sorted(plots.FIGURE_NAMES)
    for name, figure in figures.items():
        formats = ("png", "pdf") if name == "cscore_bins" else ("png",)
        if figure.get_layout_engine() is not None:
            # A constrained layout is solved at each draw from the last one's positions:
            # settle it at this dpi, so the file and the redraw below share one layout.
            figure.set_dpi(40)
            figure.canvas.draw()
        written = plots.save_figure(figure, tmp_path / name, formats, dpi=40)
        assert [p.name for p in written] == [f"{name}.{fmt}" for fmt in formats]
        png = matplotlib.image.imread(tmp_path / f"{name}.png")
        figure.set_dpi(40)
        figure.canvas.draw()
        drawn = np.asarray(figure.canvas.buffer_rgba())
        assert png.shape == drawn.shape, name
        np.testing.assert_array_equal(np.round(png * 255).astype(np.uint8), drawn)
        assert png[..., :3].std() > 0.05, f"{name}.png is blank"
    assert (tmp_path / "cscore_bins.pdf").read_bytes()[:5] == b"%PDF-"
    assert len(list(tmp_path.iterdir())) == len(figures) + 1  # no temporary left


def test_figures_are_written_atomically_with_the_umask_mode(tmp_path, data):
    """A figure replaces the file by rename: a hard link to the old file keeps its bytes."""
    scores, *_ = data
    figure = plots.plot_cscore_bins(
        scores["subset_ratios"], scores["cscore_by_ratio"], scores["cscore"]
    )
    old = tmp_path / "previous.png"
    old.write_bytes(b"the previous figure")
    (tmp_path / "figs").mkdir()
    os.link(old, tmp_path / "figs" / "cscore_bins.png")
    mask = os.umask(0o027)
    try:
        written = plots.save_figure(figure, tmp_path / "figs" / "cscore_bins", ["png"], dpi=20)
    finally:
        os.umask(mask)
    assert old.read_bytes() == b"the previous figure"
    assert [p.name for p in (tmp_path / "figs").iterdir()] == ["cscore_bins.png"]
    (path,) = written
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_unknown_format_is_refused_before_anything_is_written(tmp_path, data):
    scores, train_images, train_labels, _, _ = data
    with pytest.raises(plots.UsageError, match="cannot write figures as \\['nope'\\]"):
        plots.write_figures(
            scores, train_images, train_labels, tmp_path / "f", formats=("png", "nope")
        )
    assert not (tmp_path / "f").exists()


def test_truncated_scores_file_names_the_file(tmp_path, data):
    scores, *_ = data
    np.savez(tmp_path / "scores.npz", **scores)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes((tmp_path / "scores.npz").read_bytes()[:1000])
    with pytest.raises(plots.ScoresFileError, match="truncated.npz: cannot read"):
        plots.load_scores(truncated)


def test_topk_scores_and_no_influence(data):
    scores, train_images, train_labels, test_images, test_labels = data
    index, value = plots.topk_from_dense(scores.pop("influence"), 5)
    scores.update(influence_topk_index=index, influence_topk_value=value)
    figures = plots.draw_figures(
        scores, train_images, train_labels, test_images=test_images, test_labels=test_labels
    )
    assert sorted(figures) == sorted(plots.FIGURE_NAMES)
    first_row = figures["influence"].axes[:5]  # the test image and its 4 most influential
    t = int(first_row[0].get_title().split()[1])
    for k, ax in enumerate(first_row[1:]):
        np.testing.assert_array_equal(_shown(ax), train_images[index[t, k], :, :, 0])
    for key in ("influence_topk_index", "influence_topk_value"):
        scores.pop(key)
    figures = plots.draw_figures(scores, train_images, train_labels)
    assert sorted(figures) == ["cscore_bands", "cscore_bins", "examples", "histograms"]
    for key in ("cscore_ci_low", "cscore_ci_high"):
        scores.pop(key)
    figures = plots.draw_figures(scores, train_images, train_labels)
    assert sorted(figures) == ["cscore_bins", "examples", "histograms"]


def test_mismatched_dataset_is_an_error(tmp_path, data):
    scores, train_images, train_labels, _, _ = data
    with pytest.raises(plots.ScoresFileError, match="300 training examples"):
        plots.write_figures(scores, train_images[:10], train_labels[:10], tmp_path)
    with pytest.raises(plots.ScoresFileError, match="cscore_by_ratio"):
        plots.write_figures(
            {"subset_ratios": scores["subset_ratios"], "cscore": scores["cscore"]},
            train_images,
            train_labels,
            tmp_path,
        )


def _run_plot_scores(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    tool = Path(__file__).resolve().parents[1] / "tools" / "plot_scores.py"
    return subprocess.run(
        [
            sys.executable,
            str(tool),
            f"--scores_file={tmp_path / 'scores.npz'}",
            "--dataset=npz",
            f"--data_dir={tmp_path / 'data.npz'}",
            f"--output_dir={tmp_path / 'figs'}",
            "--formats=png",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _plan(runs: int) -> dict:
    """The JSON shape `tools/plan_runs.py --output` writes (one score)."""
    return {
        "experiment": "e",
        "scores": [
            {
                "score": "cscore",
                "runs_per_ratio": [runs, runs],
                "repeats": 3,
                "num_examples": 300,
                "measured_rho": 0.5,
                "measured_rho_sd": 0.02,
                "predicted_rho": {"1": 0.5, "2": 0.65, "4": 0.8, "8": 0.9},
                "spearman_brown_rho": {"1": 0.5, "2": 0.67, "4": 0.8, "8": 0.89},
                "target_rho": 0.9,
                "runs_for_target": [8 * runs, 8 * runs],
            }
        ],
    }


def test_command_line(tmp_path, data):
    """tools/plot_scores.py on an .npz data source, with intervals and a run plan."""
    import json

    from heldout.datasets.base import ArraySplit
    from heldout.datasets.numpy_source import save_npz

    scores, train_images, train_labels, test_images, test_labels = data
    np.savez(tmp_path / "scores.npz", **scores)
    save_npz(
        tmp_path / "data.npz",
        {
            "train": ArraySplit(train_images, train_labels.astype(np.int64)),
            "test": ArraySplit(test_images, test_labels.astype(np.int64)),
        },
    )
    (tmp_path / "plan.json").write_text(json.dumps(_plan(16)))
    completed = _run_plot_scores(tmp_path, f"--plan={tmp_path / 'plan.json'}")
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "cscore_bands.png",
        "cscore_bins.png",
        "examples.png",
        "histograms.png",
        "influence.png",
        "reliability.png",
    ]
    # The examples figure is 21 x 3 panels of 0.62 x 0.72 inches (+ margins) at 150 dpi.
    examples = matplotlib.image.imread(tmp_path / "figs" / "examples.png")
    assert examples.shape == (round(150 * (0.72 * 3 + 0.8)), round(150 * (0.62 * 21 + 1.2)), 4)
    # Not a plan: refused with the file named, before any figure is written.
    (tmp_path / "bad.json").write_text(json.dumps({"scores": [{"score": "cscore"}]}))
    (tmp_path / "figs" / "reliability.png").unlink()
    completed = _run_plot_scores(tmp_path, f"--plan={tmp_path / 'bad.json'}")
    assert completed.returncode == 2
    assert "bad.json: not a run plan" in completed.stderr
    assert not (tmp_path / "figs" / "reliability.png").exists()


def test_cscore_histogram_has_30_bins_holding_every_defined_example(data):
    scores = data[0]
    figure = plots.plot_cscore_histogram(scores["cscore"])
    (ax,) = figure.axes
    heights = [patch.get_height() for patch in ax.patches]
    assert len(heights) == 30
    assert sum(heights) == np.sum(~np.isnan(scores["cscore"])) == NUM_TRAIN - 1
    assert f"{NUM_TRAIN - 1} examples" in ax.get_title()


def test_class_statistics_figure_places_one_point_per_class():
    mean, std = np.array([0.9, 0.5, 0.7]), np.array([0.1, 0.3, 0.2])
    figure = plots.plot_class_statistics(
        np.array([0, 1, 2]), mean, std, np.array([10, 20, 30]), ["a", "b", "c"]
    )
    (ax,) = figure.axes
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), np.column_stack([mean, std]))
    assert sorted(text.get_text() for text in ax.texts) == ["a", "b", "c"]
    assert ax.get_title() == "3 classes, 60 examples: r = -1.000"


def test_score_comparison_figure_counts_the_compared_examples():
    rng = np.random.default_rng(0)
    ours = rng.random(200)
    reference = ours + rng.normal(0, 0.1, 200)
    reference[:5] = np.nan
    figure = plots.plot_score_comparison(ours, reference)
    scatter, histograms = figure.axes
    counts = scatter.collections[0].get_array()  # the 2-D histogram of ranks
    assert np.nansum(counts) == 195
    heights = [patch.get_height() for patch in histograms.patches]
    assert sum(heights) == 2 * 195  # both histograms over the same examples
    assert "195 examples" in scatter.get_title()
