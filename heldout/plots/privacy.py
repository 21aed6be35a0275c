"""The ROC curves of the membership-inference attacks on log-log axes, as Carlini et al.
draw them: what matters is the true-positive rate at very low false-positive rates, which
linear axes squeeze into a corner. The title says the targets and examples behind it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from heldout.plots.canvas import new_figure, save_figure
from heldout.scores.privacy.audit import ATTACKS, PrivacyResult

__all__ = ["plot_privacy_roc"]

_LABELS = {
    "lira_online": "online LiRA",
    "lira_offline": "offline LiRA",
    "loss_threshold": "loss threshold",
}


def plot_privacy_roc(result: PrivacyResult, path: str | os.PathLike) -> Path:
    """Draws every attack's pooled ROC (log-log, the chance diagonal dotted) to `path`.

    Args:
      result: from `compute_privacy`.
      path: a .png, .pdf or .svg file, written atomically.

    Returns:
      The file written.

    Raises:
      UsageError: a suffix matplotlib's writers do not take.
    """
    figure = new_figure(5.2, 4.6, layout="constrained")
    ax = figure.add_subplot()
    first = result.evaluations[ATTACKS[0]]
    floor = 0.5 / max(1, first.num_nonmembers)
    for name in ATTACKS:
        evaluation = result.evaluations[name]
        auc = evaluation.values["auc"]
        tpr_low = evaluation.values["tpr_at_0.1%_fpr"]
        ax.plot(
            np.maximum(evaluation.fpr, floor),
            np.maximum(evaluation.tpr, floor),
            label=f"{_LABELS[name]}: AUC {auc:.3f}, TPR@0.1% {100 * tpr_low:.2f}%",
            linewidth=1.4,
        )
    grid = np.logspace(np.log10(floor), 0, 50)
    ax.plot(grid, grid, ":", color="gray", linewidth=1.0, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(floor, 1.0)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(
        f"Membership inference ({result.statistic}): {first.num_targets} targets, "
        f"{result.attacks.num_shadows} shadows each\n{result.privacy_risk.size} examples, "
        f"{first.num_members} member / {first.num_nonmembers} non-member pairs",
        fontsize=9,
    )
    return save_figure(figure, path)[0]
