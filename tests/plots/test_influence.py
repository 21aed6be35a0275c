"""The influence figure: the top-k arithmetic, the rows chosen, the images shown."""

from __future__ import annotations

import numpy as np

from heldout.plots import influence
from tests.plots.figure_data import shown


def test_topk_from_dense_and_filter():
    matrix = np.array([[0.1, np.nan, 0.5, 0.3], [0.2, 0.9, -0.1, 0.0]], np.float32)
    index, value = influence.topk_from_dense(matrix, 2)
    assert index.tolist() == [[2, 3], [1, 0]]
    np.testing.assert_allclose(value, [[0.5, 0.3], [0.9, 0.2]])
    kept_index, kept_value = influence.filter_topk(
        index, value, count_in=np.array([9, 9, 9, 9]), count_out=np.array([9, 1, 9, 9]), min_runs=2
    )
    assert kept_index.tolist() == [[2, 3], [0, -1]]
    assert np.isnan(kept_value[1, 1])


def test_influence_rows_prefer_same_class():
    index = np.array([[5], [6], [7]])
    value = np.array([[0.9], [0.5], [0.7]])
    rows = influence.choose_influence_rows(
        index, value, np.array([0, 1, 1]), np.array([0] * 5 + [1, 1, 1]), 3
    )
    assert rows.tolist() == [2, 1, 0]  # test 0's strongest pair is of another class


def test_influence_figure_shows_each_test_image_and_its_top_training_images(data):
    scores, train_images, train_labels, test_images, test_labels = data
    index, value = influence.topk_from_dense(scores["influence"], 4)
    figure = influence.plot_influence(
        index, value, test_images, test_labels, train_images, train_labels, rows=3
    )
    rows = influence.choose_influence_rows(index, value, test_labels, train_labels, 3)
    per_row = 1 + 4 + 5  # test image, most influential, random of its class
    assert len(figure.axes) == 3 * per_row
    for row, t in enumerate(rows):
        panels = figure.axes[row * per_row : (row + 1) * per_row]
        np.testing.assert_array_equal(shown(panels[0]), test_images[t, :, :, 0])
        assert panels[0].get_title().startswith(f"test {t}\n")
        for k in range(4):
            np.testing.assert_array_equal(shown(panels[1 + k]), train_images[index[t, k], :, :, 0])
        for ax in panels[5:]:
            j = int(ax.get_title().split()[1])  # "train <j>"
            assert train_labels[j] == test_labels[t]
            np.testing.assert_array_equal(shown(ax), train_images[j, :, :, 0])


def test_no_panel_is_blank_without_a_reason(data):
    """Fewer influences than panels (a top-2 file; pairs left out) and a class with fewer
    training images than comparison panels: each gap says why, and no spacer panel."""
    _, train_images, train_labels, test_images, test_labels = data
    index = np.array([[0, 3]] * len(test_labels))
    value = np.array([[0.5, np.nan]] * len(test_labels))  # the second pair left out
    train_labels = train_labels.copy()
    train_labels[train_labels == 2] = 1
    train_labels[:2] = 2  # class 2: only two training images (example 0 and 1)
    figure = influence.plot_influence(
        index,
        value,
        test_images,
        test_labels,
        train_images,
        train_labels,
        rows=3,
        test_rows=np.array([2, 0, 1]),
        left_out="too few runs",
    )
    per_row = 1 + 2 + 5  # test image, the 2 the file keeps, random of its class
    assert len(figure.axes) == 3 * per_row
    for row in range(3):
        panels = figure.axes[row * per_row : (row + 1) * per_row]
        for group in (panels[1:3], panels[3:]):  # the influences; the random images
            empty = [ax for ax in group if not ax.images]
            assert not empty or empty[0].texts  # the first gap of a group says why
    reasons = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert reasons.count("no further pair:\ntoo few runs") == 3
    assert "its class has\n2 training\nimages" in reasons
    texts = [t.get_text() for t in figure.texts]
    assert "most influential training images (the file keeps 2 per test image)" in texts
    assert "test image\n3 of 40" in texts
