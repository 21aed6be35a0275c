"""The examples figure: per class, the highest and lowest C-score images, ties drawn at random."""

from __future__ import annotations

import numpy as np

from heldout.plots import examples
from tests.plots.figure_data import NUM_CLASSES, figure_texts, shown


def test_ranked_by_class_skips_nan_and_orders():
    cscore = np.array([0.5, np.nan, 0.9, 0.1, 0.9, 0.3])
    labels = np.array([0, 0, 0, 0, 1, 1])
    ranked = examples.ranked_by_class(cscore, labels, 2)
    high, low = ranked[0]
    assert high.indices.tolist() == [2, 0] and low.indices.tolist() == [3, 0]
    assert ranked[1][0].indices.tolist() == [4, 5]
    assert high.drawn == 0 and examples.tie_note(high) == ""


def _tied_scores() -> tuple[np.ndarray, np.ndarray]:
    """One class of 60: 50 tied at 1.0 (a C-score from few runs), 3 above none, 10 lower."""
    cscore = np.ones(60)
    cscore[50:] = np.linspace(0.1, 0.9, 10)
    return cscore, np.zeros(60, dtype=np.int64)


def test_ties_at_the_cut_are_drawn_at_random_reproducibly():
    cscore, labels = _tied_scores()
    (high, low) = examples.ranked_by_class(cscore, labels, 10, seed=0)[0]
    again = examples.ranked_by_class(cscore, labels, 10, seed=0)[0][0]
    other = examples.ranked_by_class(cscore, labels, 10, seed=1)[0][0]
    np.testing.assert_array_equal(high.indices, again.indices)
    assert set(high.indices) <= set(range(50)) and len(set(high.indices)) == 10
    assert high.indices.tolist() != list(range(10))  # not the index-order pick
    assert sorted(high.indices) != sorted(other.indices)  # the seed decides
    assert (high.tied, high.drawn, high.value) == (50, 10, 1.0)
    assert examples.tie_note(high) == "50 tied at 1.00; 10 drawn at random"
    assert low.drawn == 0 and low.indices.tolist() == list(range(50, 60))


def test_ties_fill_only_the_places_left_after_the_sure_ones():
    values = np.array([0.2, 0.9, 0.5, 0.5, 0.5, 0.5, 0.1])
    pick = examples.pick_extreme(np.arange(7), values, 3, np.random.default_rng(0), True)
    assert pick.indices[0] == 1  # above the tie: always shown, first
    assert set(pick.indices[1:]) <= {2, 3, 4, 5} and (pick.tied, pick.drawn) == (4, 2)


def test_figure_says_the_tie_drawn_and_the_runs_behind_it():
    cscore, labels = _tied_scores()
    images = np.zeros((60, 8, 8, 1), np.uint8)
    runs = "32 runs at each of ratios 0.3, 0.5, 0.7"
    figure = examples.plot_examples(cscore, images, labels, ["a"], runs=runs)
    (note,) = [t for t in figure.texts if "tied" in t.get_text()]
    assert note.get_text() == "50 tied at 1.00; 10 drawn at random"
    assert note.get_fontsize() > 6
    texts = figure_texts(figure)
    assert any("60 training examples" in t and runs in t for t in texts)


def test_examples_figure_shows_the_ranked_images(data):
    scores, train_images, train_labels, _, _ = data
    figure = examples.plot_examples(scores["cscore"], train_images, train_labels, ["a", "b", "c"])
    per_class = 10
    assert len(figure.axes) == NUM_CLASSES * 2 * per_class  # rows x (highest + lowest)
    ranked = examples.ranked_by_class(scores["cscore"], train_labels, per_class)
    for row, c in enumerate(sorted(ranked)):
        high, low = ranked[c]
        panels = figure.axes[row * 2 * per_class : (row + 1) * 2 * per_class]
        for ax, index in zip(panels, np.concatenate([high.indices, low.indices]), strict=True):
            np.testing.assert_array_equal(shown(ax), train_images[index, :, :, 0])
            assert ax.get_title() == f"{scores['cscore'][index]:.2f}"
        assert panels[0].get_ylabel() == "abc"[c]
    assert not np.isnan(scores["cscore"][figure_indices(ranked)]).any()


def figure_indices(ranked) -> np.ndarray:
    return np.concatenate([np.concatenate([p.indices for p in pair]) for pair in ranked.values()])
