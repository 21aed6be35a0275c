"""The analysis figures: one point per class, and the compared examples counted."""

from __future__ import annotations

import numpy as np

from heldout.plots import analysis


def test_class_statistics_figure_places_one_point_per_class():
    mean, std = np.array([0.9, 0.5, 0.7]), np.array([0.1, 0.3, 0.2])
    figure = analysis.plot_class_statistics(
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
    figure = analysis.plot_score_comparison(ours, reference, note="ours: 32 runs")
    density, histograms, colorbar = figure.axes
    counts = density.collections[0].get_array()  # examples per hexagon
    assert np.nansum(counts) == 195
    heights = [patch.get_height() for patch in histograms.patches]
    assert sum(heights) == 2 * 195  # both histograms over the same examples
    assert "195 examples" in density.get_title() and "ours: 32 runs" in density.get_title()
    assert "log scale" in colorbar.get_ylabel()


def test_score_comparison_covers_the_full_rank_range_and_names_the_ties():
    rng = np.random.default_rng(0)
    ours = np.where(rng.random(1000) < 0.7, 1.0, rng.random(1000))  # 70% tied at 1.0
    reference = rng.permutation(ours)
    density = analysis.plot_score_comparison(ours, reference).axes[0]
    assert density.get_xlim() == (0, 1) and density.get_ylim() == (0, 1)
    tied = int(np.sum(ours == 1.0))
    assert f"{tied} of ours at 1.00, {tied} of published at 1.00" in density.get_title()
