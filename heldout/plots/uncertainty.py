"""Figures of uncertainty: C-scores with their interval bands, and reliability against runs.

- `plot_cscore_bands`: per class, the training examples sorted by integral C-score, the
  score as a line and its confidence interval (`cscore_ci_low` / `cscore_ci_high` from
  `tools/compute_scores.py --confidence`) as a band: where bands overlap, the ranking
  between those examples is not settled by the runs.
- `plot_reliability_curve`: the split-half rank reliability `tools/plan_runs.py` measured
  and predicted, against runs per ratio, with the target and Spearman-Brown for reference.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from heldout.errors import ScoresFileError, UsageError
from heldout.plots.canvas import new_figure, save_figure
from heldout.plots.captions import UNKNOWN_RUNS, scores_runs

__all__ = [
    "BAND_KEYS",
    "plot_cscore_bands",
    "plot_reliability_curve",
    "total_runs",
    "write_cscore_bands",
]

BAND_KEYS = ("cscore", "cscore_ci_low", "cscore_ci_high")


def plot_cscore_bands(
    cscore: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    confidence: float | None = None,
    max_classes: int = 10,
    num_runs: int | None = None,
    runs: str | None = None,
) -> Figure:
    """Per class, examples sorted by C-score: the score and its interval as a band.

    Args:
      cscore, low, high: float [N]: the integral C-score and its interval.
      labels: int [N] class of each example; None for one panel of all examples.
      class_names: names of the classes (default: the ids).
      confidence: the intervals' nominal coverage, for the title.
      max_classes: panels at most (the first classes by id).
      num_runs: the runs behind the scores, for the title.
      runs: what the scores rest on, as words (`heldout.plots.captions`); preferred over
        `num_runs` in the title.

    Returns:
      The figure: one axes per class shown; in each, the line is the sorted C-scores and
      the band spans low..high of the same examples. Examples whose score is NaN (never
      held out) are left out, and the panel title says how many are shown.

    Raises:
      UsageError: arrays of different lengths.
    """
    cscore, low, high = (np.asarray(a, dtype=np.float64) for a in (cscore, low, high))
    if not cscore.shape == low.shape == high.shape or cscore.ndim != 1:
        raise UsageError(
            f"cscore, low and high must be 1-D of one length, got {cscore.shape}, "
            f"{low.shape}, {high.shape}"
        )
    if labels is None:
        groups = [("all examples", np.arange(cscore.size))]
    else:
        labels = np.asarray(labels)
        if labels.shape != cscore.shape:
            raise UsageError(f"labels has shape {labels.shape}; the scores have {cscore.shape}")
        classes = np.unique(labels)[:max_classes]
        names = list(class_names) if class_names is not None else None
        groups = [
            (
                names[c] if names is not None and 0 <= c < len(names) else f"class {c}",
                np.flatnonzero(labels == c),
            )
            for c in classes.tolist()
        ]
    columns = min(5, len(groups))
    rows = math.ceil(len(groups) / columns)
    figure = new_figure(3.0 * columns, 2.4 * rows + 0.4, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    for ax in axes.flat[len(groups) :]:
        ax.remove()
    total = 0
    for ax, (name, members) in zip(axes.flat, groups, strict=False):
        shown = members[~np.isnan(cscore[members])]
        total += shown.size
        order = shown[np.argsort(cscore[shown], kind="stable")]
        position = np.arange(order.size)
        ax.fill_between(position, low[order], high[order], color="tab:blue", alpha=0.3, lw=0)
        ax.plot(position, cscore[order], color="tab:blue", lw=1)
        ax.set_title(f"{name} ({order.size} examples)", fontsize=9)
        ax.set_xlabel("examples, by C-score", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("C-score", fontsize=8)
    level = f"{confidence:.0%} " if confidence is not None else ""
    if runs is None:
        runs = f"{num_runs} runs" if num_runs is not None else UNKNOWN_RUNS
    figure.suptitle(
        f"C-scores of {total} examples with their {level}confidence intervals; {runs}",
        fontsize=10,
    )
    return figure


def total_runs(scores: dict[str, np.ndarray]) -> int | None:
    """All runs behind a scores file's C-scores (`num_runs_by_ratio`), if it says."""
    runs = scores.get("num_runs_by_ratio")
    return None if runs is None else int(np.sum(runs))


def _number(value) -> float:
    """JSON's null (an undefined reliability) as NaN, which matplotlib leaves out."""
    return float("nan") if value is None else float(value)


def _plan_dict(plan) -> dict:
    return plan.to_json() if hasattr(plan, "to_json") else dict(plan)


def plot_reliability_curve(plan) -> Figure:
    """Split-half reliability against runs per ratio, one line per score.

    Args:
      plan: a `heldout.scores.uncertainty.RunPlan` or its JSON form (`tools/plan_runs.py
        --output`).

    Returns:
      One axes: per score, the predicted curve (solid, markers at the predicted budgets),
      the measured value at the current runs (a point with an error bar of one standard
      deviation over the repeats), Spearman-Brown's step-up (dashed), the ceiling as runs
      grow without bound (dash-dotted) and, where reached, the fewest runs whose predicted
      rho stays at the target (a vertical line); the target itself is a grey line. Every
      line is named in the legend.
    """
    plan = _plan_dict(plan)
    figure = new_figure(7.0, 6.0, layout="constrained")
    ax = figure.subplots()
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    target = None
    for color, score in zip(colors, plan["scores"], strict=False):
        runs = max(score["runs_per_ratio"])
        multipliers = sorted(float(m) for m in score["predicted_rho"])
        budget = [m * runs for m in multipliers]
        predicted = [_number(score["predicted_rho"][f"{m:g}"]) for m in multipliers]
        brown = [_number(score["spearman_brown_rho"][f"{m:g}"]) for m in multipliers]
        # Every budget the planner evaluated, so the curve reaches its answer.
        checked = {float(r): _number(v) for r, v in (score.get("checked_rho") or {}).items()}
        curve = sorted({**dict(zip(budget, predicted, strict=True)), **checked}.items())
        falls = "".join(
            f"; falls {rho:.3f} -> {lower:.3f} from {runs:g} to {later:g} runs"
            for runs, rho, later, lower in score.get("falls") or ()
        )
        ax.plot(
            [b for b, _ in curve],
            [v for _, v in curve],
            "-o",
            color=color,
            ms=2.5,
            label=f"{score['score']}: predicted{falls}",
        )
        ax.plot(budget, brown, "--", color=color, lw=0.8, label=f"{score['score']}: Spearman-Brown")
        ax.errorbar(
            [runs],
            [_number(score["measured_rho"])],
            yerr=[_number(score["measured_rho_sd"])],
            fmt="s",
            color=color,
            ms=6,
            capsize=3,
            label=f"{score['score']}: measured ({score['repeats']} splits, "
            f"{score['num_examples']} examples)",
        )
        target = score["target_rho"]
        if score["runs_for_target"] is not None:
            needed = max(score["runs_for_target"])
            ax.axvline(
                needed,
                color=color,
                lw=0.8,
                ls=":",
                label=f"{score['score']}: {needed:g} runs per ratio, the fewest whose "
                f"predicted rho stays >= {target:g}",
            )
        ceiling = _number(score.get("ceiling_rho"))
        if np.isfinite(ceiling):
            tied = sum((score.get("tied_true_values") or {}).values())
            ax.axhline(
                ceiling,
                color=color,
                lw=0.8,
                ls="-.",
                label=f"{score['score']}: ceiling {ceiling:.3f} as runs grow without bound "
                f"({tied:.0%} of examples tied at exactly 0 or 1)",
            )
    if target is not None:
        ax.axhline(target, color="grey", lw=0.8, label=f"target rho {target:g}")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xlabel("runs per subset ratio")
    ax.set_ylabel("split-half Spearman rho")
    ax.set_ylim(0, 1.02)
    counts = sorted({int(n) for score in plan["scores"] for n in score["runs_per_ratio"]})
    examples = ", ".join(f"{score['score']} {score['num_examples']}" for score in plan["scores"])
    ax.set_title(
        f"{plan['experiment']}: ranking reliability against runs\nmeasured at "
        f"{'/'.join(map(str, counts))} runs per ratio; examples: {examples}",
        fontsize=9,
    )
    figure.legend(fontsize=7, loc="outside lower center", ncols=1)
    return figure


def write_cscore_bands(
    scores: dict[str, np.ndarray],
    path_stem: str | os.PathLike,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    formats: Sequence[str] = ("pdf", "png"),
) -> list[Path]:
    """The band figure of a scores file's arrays, as `<path_stem>.<format>` files.

    Raises:
      ScoresFileError: the scores lack the interval keys (compute them with
        `tools/compute_scores.py --confidence=0.95`).
    """
    missing = [key for key in BAND_KEYS if key not in scores]
    if missing:
        raise ScoresFileError(
            f"the scores have no {', '.join(missing)}: compute them with "
            "tools/compute_scores.py --scores=cscore --confidence=0.95"
        )
    confidence = float(scores["confidence"]) if "confidence" in scores else None
    figure = plot_cscore_bands(
        scores["cscore"],
        scores["cscore_ci_low"],
        scores["cscore_ci_high"],
        labels=labels,
        class_names=class_names,
        confidence=confidence,
        runs=scores_runs(scores),
    )
    return [save_figure(figure, f"{os.fspath(path_stem)}.{fmt}")[0] for fmt in formats]
