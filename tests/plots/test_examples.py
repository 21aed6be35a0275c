"""The examples figure: per class, the highest and lowest C-score images."""

from __future__ import annotations

import numpy as np

from heldout.plots import examples
from tests.plots.figure_data import NUM_CLASSES, shown


def test_ranked_by_class_skips_nan_and_orders():
    cscore = np.array([0.5, np.nan, 0.9, 0.1, 0.9, 0.3])
    labels = np.array([0, 0, 0, 0, 1, 1])
    ranked = examples.ranked_by_class(cscore, labels, 2)
    high, low = ranked[0]
    assert high.tolist() == [2, 0] and low.tolist() == [3, 0]
    assert ranked[1][0].tolist() == [4, 5]


def test_examples_figure_shows_the_ranked_images(data):
    scores, train_images, train_labels, _, _ = data
    figure = examples.plot_examples(scores["cscore"], train_images, train_labels, ["a", "b", "c"])
    per_class = 10
    assert len(figure.axes) == NUM_CLASSES * 2 * per_class  # rows x (highest + lowest)
    ranked = examples.ranked_by_class(scores["cscore"], train_labels, per_class)
    for row, c in enumerate(sorted(ranked)):
        high, low = ranked[c]
        panels = figure.axes[row * 2 * per_class : (row + 1) * 2 * per_class]
        for ax, index in zip(panels, np.concatenate([high, low]), strict=True):
            np.testing.assert_array_equal(shown(ax), train_images[index, :, :, 0])
            assert ax.get_title() == f"{scores['cscore'][index]:.2f}"
        assert panels[0].get_ylabel() == "abc"[c]
    assert not np.isnan(scores["cscore"][figure_indices(ranked)]).any()


def figure_indices(ranked) -> np.ndarray:
    return np.concatenate([np.concatenate(pair) for pair in ranked.values()])
