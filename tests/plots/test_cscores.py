"""The C-score distribution figures count every defined example once."""

from __future__ import annotations

import numpy as np

from heldout.plots import cscores
from tests.plots.figure_data import NUM_TRAIN


def test_bin_means():
    cscore = np.array([0.05, 0.15, 0.95, 1.0, np.nan])
    by_ratio = np.array([[0.0, 0.2, 0.9, 1.0, 0.5], [0.1, np.nan, 1.0, 1.0, 0.5]])
    edges, counts, means = cscores.bin_means(cscore, by_ratio, num_bins=10)
    assert counts.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    np.testing.assert_allclose(means[0], [0.0, 0.1])
    np.testing.assert_allclose(means[1][0], 0.2)
    assert np.isnan(means[1][1]) and np.isnan(means[2]).all()
    np.testing.assert_allclose(means[9], [0.95, 1.0])


def test_histograms_and_bins_show_the_counts(data):
    scores, *_ = data
    by_ratio, cscore = scores["cscore_by_ratio"], scores["cscore"]
    figure = cscores.plot_histograms(scores["subset_ratios"], by_ratio, cscore)
    assert len(figure.axes) == len(scores["subset_ratios"]) + 1  # one per ratio + integral
    for ax, values in zip(figure.axes, [*by_ratio, cscore], strict=True):
        defined = int((~np.isnan(values)).sum())
        assert len(ax.patches) == 20
        assert sum(bar.get_height() for bar in ax.patches) == defined
        assert f"({defined} examples)" in ax.get_title()
    figure = cscores.plot_cscore_bins(scores["subset_ratios"], by_ratio, cscore)
    (ax,) = figure.axes
    _, counts, means = cscores.bin_means(cscore, by_ratio)
    assert len(ax.lines) == int((counts > 0).sum())
    for line, b in zip(ax.lines, np.flatnonzero(counts), strict=True):
        np.testing.assert_allclose(line.get_ydata(), means[b])
        assert line.get_label().endswith(f"n={counts[b]}")


def test_cscore_histogram_has_30_bins_holding_every_defined_example(data):
    scores = data[0]
    figure = cscores.plot_cscore_histogram(scores["cscore"])
    (ax,) = figure.axes
    heights = [patch.get_height() for patch in ax.patches]
    assert len(heights) == 30
    assert sum(heights) == np.sum(~np.isnan(scores["cscore"])) == NUM_TRAIN - 1
    assert f"{NUM_TRAIN - 1} examples" in ax.get_title()
