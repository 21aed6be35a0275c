"""Figures from a scores file: the helpers' arithmetic, and every file written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heldout import plots

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


def test_write_figures_pdf_and_png(tmp_path, data):
    scores, train_images, train_labels, test_images, test_labels = data
    written = plots.write_figures(
        scores,
        train_images,
        train_labels,
        tmp_path,
        test_images=test_images,
        test_labels=test_labels,
        class_names=["a", "b", "c"],
    )
    names = sorted(p.name for p in written)
    assert names == sorted(f"{n}.{f}" for n in plots.FIGURE_NAMES for f in ("pdf", "png"))
    for path in written:
        assert path.stat().st_size > 1000
        assert path.read_bytes()[:4] in (b"%PDF", b"\x89PNG")


def test_topk_scores_and_no_influence(tmp_path, data):
    scores, train_images, train_labels, test_images, test_labels = data
    index, value = plots.topk_from_dense(scores.pop("influence"), 5)
    scores.update(influence_topk_index=index, influence_topk_value=value)
    written = plots.write_figures(
        scores,
        train_images,
        train_labels,
        tmp_path / "a",
        test_images=test_images,
        test_labels=test_labels,
        formats=("png",),
    )
    assert len(written) == 4
    for key in ("influence_topk_index", "influence_topk_value"):
        scores.pop(key)
    written = plots.write_figures(
        scores, train_images, train_labels, tmp_path / "b", formats=("png",)
    )
    assert sorted(p.stem for p in written) == ["cscore_bins", "examples", "histograms"]


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


def test_command_line(tmp_path, data):
    """tools/plot_scores.py on an .npz data source."""
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
    tool = Path(__file__).resolve().parents[1] / "tools" / "plot_scores.py"
    completed = subprocess.run(
        [
            sys.executable,
            str(tool),
            f"--scores={tmp_path / 'scores.npz'}",
            "--dataset=npz",
            f"--data_dir={tmp_path / 'data.npz'}",
            f"--output_dir={tmp_path / 'figs'}",
            "--formats=png",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "cscore_bins.png",
        "examples.png",
        "histograms.png",
        "influence.png",
    ]
