"""The proxies figure: rank scatters with tied ranks averaged, written at its own resolution."""

from __future__ import annotations

import matplotlib.image
import numpy as np

from heldout.plots import canvas, proxies


def _figure(reference: np.ndarray, values: dict[str, np.ndarray]):
    return proxies.plot_proxies(values, reference, {"a": np.array([0.1, 0.3, np.nan])}, {"a": 0.5})


def test_scatter_places_each_example_at_its_ranks_with_ties_averaged():
    reference = np.array([0.3, np.nan, 0.1, 0.3, 0.9])
    values = {"a": np.array([2.0, 5.0, 2.0, 1.0, 3.0])}
    figure = _figure(reference, values)
    scatter = figure.axes[1].collections[0]
    # Defined examples 0, 2, 3, 4: reference ranks 2.5, 1, 2.5, 4; proxy ranks 2.5, 2.5, 1, 4.
    expected = np.array([[2.5, 2.5], [1, 2.5], [2.5, 1], [4, 4]]) / 4
    np.testing.assert_array_equal(scatter.get_offsets(), expected)
    assert figure.axes[1].get_title() == "a: rho 0.500"


def test_written_at_the_figure_resolution(tmp_path):
    figure = _figure(np.array([0.2, 0.5, 0.9]), {"a": np.array([1.0, 2.0, 3.0])})
    (path,) = canvas.save_figure(figure, tmp_path / "proxies.png", dpi=proxies.DPI)
    width, height = figure.get_size_inches()
    assert matplotlib.image.imread(path).shape[:2] == (
        round(proxies.DPI * height),
        round(proxies.DPI * width),
    )
