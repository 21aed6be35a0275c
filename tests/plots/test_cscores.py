"""The C-score distribution figures count every defined example once."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_fraction_bins_put_each_attainable_fraction_in_its_own_bin():
    n = 22
    k = np.random.default_rng(0).integers(0, n + 1, 500)
    edges, heights, note = cscores.fraction_bins(k / n, np.full(500, n))
    attainable = np.arange(n + 1) / n
    gaps = np.abs(edges[:, np.newaxis] - attainable[np.newaxis, :]).min(axis=1)
    np.testing.assert_allclose(gaps, 0.5 / n)  # every edge midway between two fractions
    np.testing.assert_array_equal(heights, np.bincount(k, minlength=n + 1))
    assert note == "bins: k/22"


def test_fraction_bins_of_varying_held_out_counts_do_not_sawtooth():
    """Estimates of a smooth distribution, each from its own number of held-out runs
    (as in a real experiment): the aligned bins are flat where equal bins sawtooth."""
    rng = np.random.default_rng(0)
    n = rng.binomial(32, 0.7, 200_000)
    values = rng.binomial(n, rng.uniform(0.2, 0.8, n.size)) / n
    edges, heights, note = cscores.fraction_bins(values, n)
    assert heights.sum() == pytest.approx(values.size)
    centers = (edges[:-1] + edges[1:]) / 2
    inner = heights[(centers > 0.3) & (centers < 0.7)]
    assert np.ptp(inner) / inner.mean() < 0.1
    plain = np.histogram(values, np.linspace(0, 1, 21))[0]
    plain_inner = plain[7:13]  # [0.35, 0.65)
    assert np.ptp(plain_inner) / plain_inner.mean() > 0.2  # the sawtooth this avoids
    assert note.startswith("held out ") and "spread" in note


def test_fraction_bins_say_why_they_are_not_aligned():
    values = np.array([0.1, 0.25, 0.333])
    assert cscores.fraction_bins(values, None)[2] == "no held-out counts"
    assert cscores.fraction_bins(values, np.array([10, 10, 10]))[2] == "not k/n fractions"


def test_histogram_and_bin_titles_carry_the_runs_and_examples(data):
    scores, *_ = data
    ratios, by_ratio, cscore = scores["subset_ratios"], scores["cscore_by_ratio"], scores["cscore"]
    n = np.full(by_ratio.shape, 20)
    by_ratio = np.where(np.isnan(by_ratio), np.nan, np.round(by_ratio * 20) / 20)
    figure = cscores.plot_histograms(
        ratios, by_ratio, cscore, count_out_by_ratio=n, num_runs_by_ratio=np.array([32, 30, 32])
    )
    titles = [ax.get_title() for ax in figure.axes]
    assert titles[0].startswith("subset ratio 0.3 (295 examples, 32 runs)\nbins: k/20")
    assert titles[1].startswith("subset ratio 0.5 (300 examples, 30 runs)")
    for ax, values in zip(figure.axes, by_ratio, strict=False):
        assert sum(bar.get_height() for bar in ax.patches) == (~np.isnan(values)).sum()
    runs = "32 runs at each of ratios 0.3, 0.5, 0.7"
    (ax,) = cscores.plot_cscore_bins(ratios, by_ratio, cscore, runs=runs).axes
    assert ax.get_title() == f"{NUM_TRAIN - 1} examples binned by integral C-score\n{runs}"
