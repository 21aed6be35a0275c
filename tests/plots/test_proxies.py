"""The proxies figure: rank scatters with tied ranks averaged, written at its own resolution."""

from __future__ import annotations

import matplotlib.image
import numpy as np

from heldout.plots import canvas, proxies


def _figure(reference: np.ndarray, values: dict[str, np.ndarray]):
    return proxies.plot_proxies(values, reference, {"a": np.array([0.1, 0.3, np.nan])}, {"a": 0.5})


def test_rank_density_counts_each_example_at_its_ranks_with_ties_averaged():
    reference = np.array([0.3, np.nan, 0.1, 0.3, 0.9])
    values = {"a": np.array([2.0, 5.0, 2.0, 1.0, 3.0])}
    figure = _figure(reference, values)
    # Defined examples 0, 2, 3, 4: reference ranks 2.5, 1, 2.5, 4; proxy ranks 2.5, 2.5, 1, 4.
    ranks = proxies.rank_pairs(reference, values["a"], np.array([0, 2, 3, 4]))
    expected = np.array([[2.5, 2.5], [1, 2.5], [2.5, 1], [4, 4]]) / 4
    np.testing.assert_array_equal(np.column_stack(ranks), expected)
    density = figure.axes[1]
    assert np.sum(density.collections[0].get_array()) == 4  # every defined example
    assert density.get_xlim() == (0, 1) and density.get_ylim() == (0, 1)
    assert density.get_title() == "a: rho 0.500"
    assert "log scale" in figure.axes[-1].get_ylabel()  # the colour bar
    assert "4 examples with a C-score" in figure.axes[0].get_title()


def test_written_at_the_figure_resolution(tmp_path):
    figure = _figure(np.array([0.2, 0.5, 0.9]), {"a": np.array([1.0, 2.0, 3.0])})
    (path,) = canvas.save_figure(figure, tmp_path / "proxies.png", dpi=proxies.DPI)
    width, height = figure.get_size_inches()
    assert matplotlib.image.imread(path).shape[:2] == (
        round(proxies.DPI * height),
        round(proxies.DPI * width),
    )
