"""The LDS-against-estimation-runs figure: drawn from the arrays `heldout attribution` writes."""

import numpy as np
import pytest

from heldout.errors import UsageError
from heldout.plots.attribution import plot_attribution_lds, write_attribution_lds


def _arrays():
    return {
        "ceiling_runs": np.array([8, 16, 20]),
        "ceiling_lds": np.array([0.1, 0.2, 0.25]),
        "ceiling_ci_low": np.array([0.05, 0.15, 0.2]),
        "ceiling_ci_high": np.array([0.15, 0.25, 0.3]),
        "ceiling_num_test": np.array([40, 41, 41]),
        "num_runs": np.int64(20),
        "num_test": np.int64(41),
        "output_kind": np.asarray("margin"),
        "lds": np.float64(0.12),
        "lds_ci_low": np.float64(0.1),
        "lds_ci_high": np.float64(0.14),
        "baseline_names": np.asarray(["random", "last-layer TRAK (2 models)"]),
        "baseline_lds": np.array([0.0, 0.08]),
        "baseline_ci_low": np.array([-0.02, 0.06]),
        "baseline_ci_high": np.array([0.02, 0.1]),
    }


def test_figure_names_runs_and_test_examples_and_every_method(tmp_path):
    figure = plot_attribution_lds(_arrays())
    ax = figure.axes[0]
    assert "20 evaluation runs, 41 test examples" in ax.get_title()
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any(label.startswith("last-layer TRAK (2 models): +0.080") for label in labels)
    assert any(label.startswith("random") for label in labels)
    path = write_attribution_lds(tmp_path / "lds.png", _arrays())
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_no_ceiling_is_refused():
    arrays = _arrays()
    arrays["ceiling_runs"] = np.array([], np.int64)
    with pytest.raises(UsageError, match="no ceiling"):
        plot_attribution_lds(arrays)
