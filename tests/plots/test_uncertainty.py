"""The uncertainty figures show what they claim: sorted scores, their bands, the curves."""

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from heldout.errors import ScoresFileError, UsageError
from heldout.plots.uncertainty import (
    plot_cscore_bands,
    plot_reliability_curve,
    write_cscore_bands,
)
from tests.plots.figure_data import run_plan


def _band_vertices(ax) -> np.ndarray:
    """The vertices of the one fill_between polygon of an axes."""
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    return band.get_paths()[0].vertices


def test_band_figure_has_a_panel_per_class_with_sorted_scores_and_their_intervals():
    rng = np.random.default_rng(0)
    cscore = rng.uniform(0.1, 0.9, 60)
    cscore[[3, 27]] = np.nan  # never held out: not shown
    low, high = cscore - 0.05, cscore + 0.1
    labels = np.repeat([0, 1, 2], 20)
    figure = plot_cscore_bands(
        cscore, low, high, labels, class_names=["cat", "dog", "frog"], confidence=0.95
    )
    axes = figure.get_axes()
    assert [ax.get_title() for ax in axes] == [
        "cat (19 examples)",
        "dog (19 examples)",
        "frog (20 examples)",
    ]
    assert "95% confidence intervals" in figure._suptitle.get_text()
    assert "C-scores of 58 examples" in figure._suptitle.get_text()
    for ax, members in zip(
        axes, (np.arange(20), np.arange(20, 40), np.arange(40, 60)), strict=True
    ):
        shown = members[~np.isnan(cscore[members])]
        order = shown[np.argsort(cscore[shown])]
        (line,) = ax.get_lines()
        np.testing.assert_allclose(line.get_ydata(), cscore[order])
        ys = _band_vertices(ax)[:, 1]
        # The band's edges are exactly the sorted examples' low and high limits.
        assert set(np.round(ys, 9)) == set(np.round(np.r_[low[order], high[order]], 9))


def test_band_figure_without_labels_is_one_panel_and_rejects_mismatched_arrays():
    figure = plot_cscore_bands(np.array([0.2, 0.5]), np.array([0.1, 0.3]), np.array([0.4, 0.8]))
    assert [ax.get_title() for ax in figure.get_axes()] == ["all examples (2 examples)"]
    with pytest.raises(UsageError, match="one length"):
        plot_cscore_bands(np.zeros(3), np.zeros(2), np.zeros(3))


def test_reliability_figure_draws_prediction_measurement_and_target():
    figure = plot_reliability_curve(run_plan())
    (ax,) = figure.get_axes()
    lines = {line.get_label(): line for line in ax.get_lines()}
    predicted = lines["cscore: predicted"]
    np.testing.assert_allclose(predicted.get_xdata(), [4, 8, 16, 32])
    np.testing.assert_allclose(predicted.get_ydata(), [0.3, 0.5, 0.65, 0.8])
    memorization = lines["memorization: predicted"].get_ydata()
    assert np.isnan(memorization[0]) and memorization[1] == 0.2  # null: not drawn
    vertical = [line for line in ax.get_lines() if list(line.get_xdata()) == [24, 24]]
    assert len(vertical) == 1  # runs the target needs, only where it is reached
    assert any(list(line.get_ydata()) == [0.75, 0.75] for line in ax.get_lines())
    (legend,) = figure.legends  # below the axes, where it hides no line
    legend = [text.get_text() for text in legend.get_texts()]
    assert "cscore: measured (3 splits, 400 examples)" in legend
    # The vertical line says what it marks, by the rule the planner applies.
    assert "cscore: 24 runs per ratio, the fewest whose predicted rho stays >= 0.75" in legend
    assert "target rho 0.75" in legend
    assert (
        "cscore: ceiling 0.970 as runs grow without bound (72% of examples tied at exactly 0 or 1)"
        in legend
    )
    assert any(list(line.get_ydata()) == [0.97, 0.97] for line in ax.get_lines())
    plan = run_plan()
    plan["scores"][0]["falls"] = [[16, 0.65, 32, 0.6]]
    (legend,) = plot_reliability_curve(plan).legends  # a fall is never drawn unsaid
    assert "cscore: predicted; falls 0.650 -> 0.600 from 16 to 32 runs" in [
        text.get_text() for text in legend.get_texts()
    ]
    assert ax.get_title().endswith(
        "measured at 8 runs per ratio; examples: cscore 400, memorization 350"
    )


def test_band_files_from_a_scores_file(tmp_path):
    scores = {
        "cscore": np.array([0.2, 0.6, 0.9]),
        "cscore_ci_low": np.array([0.1, 0.4, 0.7]),
        "cscore_ci_high": np.array([0.4, 0.8, 1.0]),
        "confidence": np.float64(0.9),
    }
    written = write_cscore_bands(scores, tmp_path / "bands", labels=np.array([0, 0, 1]))
    assert [p.name for p in written] == ["bands.pdf", "bands.png"]
    with pytest.raises(ScoresFileError, match="--confidence=0.95"):
        write_cscore_bands({"cscore": scores["cscore"]}, tmp_path / "none")
