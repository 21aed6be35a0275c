"""Figures of scores, uncertainty, proxies and learning curves, drawn with matplotlib.

Modules: `canvas` (the figure, `save_figure`, formats), `captions` (runs and examples each
figure states), `figures` (`write_figures`: every figure of a scores file), `examples`,
`cscores`, `influence` (`influence_evidence`: its q-values), `uncertainty`, `analysis`,
`proxies`, `curves` (learning curves).
"""

from heldout.plots.analysis import plot_class_statistics, plot_score_comparison
from heldout.plots.canvas import check_formats, save_figure
from heldout.plots.cscores import plot_cscore_bins, plot_cscore_histogram, plot_histograms
from heldout.plots.curves import (
    CurveRecorder,
    LearningCurve,
    learning_curve_figure,
    save_learning_curves,
)
from heldout.plots.examples import plot_examples
from heldout.plots.figures import (
    FIGURE_NAMES,
    class_names_for,
    draw_figures,
    load_scores,
    write_figures,
)
from heldout.plots.influence import plot_influence
from heldout.plots.influence_evidence import influence_evidence_for
from heldout.plots.proxies import plot_proxies
from heldout.plots.uncertainty import plot_cscore_bands, plot_reliability_curve, write_cscore_bands

__all__ = [
    "FIGURE_NAMES",
    "CurveRecorder",
    "LearningCurve",
    "check_formats",
    "class_names_for",
    "draw_figures",
    "influence_evidence_for",
    "learning_curve_figure",
    "load_scores",
    "plot_class_statistics",
    "plot_cscore_bands",
    "plot_cscore_bins",
    "plot_cscore_histogram",
    "plot_examples",
    "plot_histograms",
    "plot_influence",
    "plot_proxies",
    "plot_reliability_curve",
    "plot_score_comparison",
    "save_figure",
    "save_learning_curves",
    "write_cscore_bands",
    "write_figures",
]
