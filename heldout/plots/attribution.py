"""The LDS of attributions against the number of estimation runs behind the ceiling.

The ceiling (holdout influence from the first m estimation runs) is drawn with its 95 %
intervals against m; the scored attribution and each baseline are horizontal lines with
their interval as a band, so a user sees how many retrained runs a method is worth.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from heldout.errors import UsageError
from heldout.plots.canvas import new_figure, save_figure

__all__ = ["plot_attribution_lds", "write_attribution_lds"]

_REQUIRED = ("ceiling_runs", "ceiling_lds", "ceiling_ci_low", "ceiling_ci_high", "num_runs")


def _methods(lds: Mapping[str, np.ndarray]) -> list[tuple[str, float, float, float, int]]:
    """(name, LDS, low, high, test examples or -1 where not recorded) of each method."""
    rows = []
    if "lds" in lds and np.isfinite(lds["lds"]):
        low, high = float(lds["lds_ci_low"]), float(lds["lds_ci_high"])
        rows.append(("attribution", float(lds["lds"]), low, high, int(lds.get("num_test", -1))))
    names = np.asarray(lds.get("baseline_names", ())).tolist()
    counts = np.asarray(lds.get("baseline_num_test", [-1] * len(names)))
    for i, name in enumerate(names):
        low, high = float(lds["baseline_ci_low"][i]), float(lds["baseline_ci_high"][i])
        rows.append((str(name), float(lds["baseline_lds"][i]), low, high, int(counts[i])))
    return rows


def plot_attribution_lds(lds: Mapping[str, np.ndarray], title: str | None = None) -> Figure:
    """LDS with 95 % intervals against estimation runs (the ceiling), methods as bands.

    Args:
      lds: the arrays `heldout attribution` writes (`scores.attribution.scoring.
        lds_arrays`): `ceiling_*`, `num_runs`, `num_test`, the attribution's `lds*` and
        the `baseline_*` arrays.
      title: replaces the first title line (the runs and test examples line stays).

    Returns:
      The figure.

    Raises:
      UsageError: the arrays hold no ceiling.
    """
    missing = [key for key in _REQUIRED if key not in lds]
    if missing or np.size(lds["ceiling_runs"]) == 0:
        raise UsageError(f"no ceiling to draw (missing {missing or ['ceiling_runs']})")
    runs = np.asarray(lds["ceiling_runs"], dtype=float)
    value = np.asarray(lds["ceiling_lds"], dtype=float)
    low, high = np.asarray(lds["ceiling_ci_low"]), np.asarray(lds["ceiling_ci_high"])
    figure = new_figure(7.5, 5.4, layout="constrained")
    ax = figure.add_subplot()
    ax.errorbar(
        runs,
        value,
        yerr=[value - low, high - value],
        color="black",
        marker="o",
        capsize=3,
        label="ceiling: holdout influence from the first m estimation runs",
    )
    counts = np.asarray(lds.get("ceiling_num_test", ()), dtype=np.int64)
    num_test = int(counts.max()) if counts.size else int(lds.get("num_test", 0))
    colors = ["tab:red", "tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown"]
    for i, (name, mean, lo, hi, tests) in enumerate(_methods(lds)):
        color = colors[i % len(colors)]
        label = f"{name}: {mean:+.3f}" + (f" ({tests} test)" if 0 <= tests != num_test else "")
        ax.axhline(mean, color=color, linewidth=1.2, label=label)
        ax.axhspan(lo, hi, color=color, alpha=0.15, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xticks(runs)
    ax.set_xticklabels([str(int(m)) for m in runs])
    ax.set_xlabel("estimation runs m behind the holdout influence")
    ax.set_ylabel("LDS (mean Spearman over test examples)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    kind = str(lds.get("output_kind", ""))
    first = title or f"LDS against estimation runs (outputs: {kind})"
    ax.set_title(
        f"{first}\n{int(lds['num_runs'])} evaluation runs, {num_test} test examples with a "
        "defined LDS; bars and bands: 95% bootstrap intervals",
        fontsize=9,
    )
    return figure


def write_attribution_lds(
    path: str | os.PathLike, lds: Mapping[str, np.ndarray], title: str | None = None
) -> Path:
    """Draws `plot_attribution_lds` into `path` (format by suffix, written atomically).

    Returns:
      The file written.

    Raises:
      UsageError: no ceiling in `lds`, or a suffix matplotlib cannot write.
    """
    (written,) = save_figure(plot_attribution_lds(lds, title), path)
    return written
