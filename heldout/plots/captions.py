"""The words a figure gives about what is behind it: runs per subset ratio, examples.

A figure of estimates means little without the runs they rest on, so every figure's title
or caption says them (from the scores file's `subset_ratios` and `num_runs_by_ratio`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

UNKNOWN_RUNS = "runs per ratio not recorded"


def runs_per_ratio(subset_ratios, num_runs_by_ratio) -> str:
    """'32 runs at each of ratios 0.3, 0.5, 0.7', or per ratio when they differ.

    Args:
      subset_ratios: the ratios [R], or None.
      num_runs_by_ratio: the runs read at each ratio [R], or None when not recorded.

    Returns:
      The phrase; 'runs per ratio not recorded' when either is None.
    """
    if subset_ratios is None or num_runs_by_ratio is None:
        return UNKNOWN_RUNS
    ratios = [f"{float(r):g}" for r in np.atleast_1d(subset_ratios)]
    runs = [int(n) for n in np.atleast_1d(num_runs_by_ratio)]
    if len(set(runs)) == 1:
        where = "ratio" if len(ratios) == 1 else "each of ratios"
        return f"{runs[0]} runs at {where} {', '.join(ratios)}"
    return "runs per ratio: " + ", ".join(f"{n} at {r}" for r, n in zip(ratios, runs, strict=True))


def scores_runs(scores: Mapping[str, np.ndarray]) -> str:
    """`runs_per_ratio` of a scores file's arrays."""
    return runs_per_ratio(scores.get("subset_ratios"), scores.get("num_runs_by_ratio"))


def count_out_by_ratio(scores: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Per ratio and example, the runs that held it out [R, N], if the file records them."""
    for key in ("cscore_count_out_by_ratio", "heldout_count_by_ratio"):
        if key in scores:
            return np.asarray(scores[key])
    return None


def runs_of_scores_file(path: str) -> str:
    """`runs_per_ratio` of a scores `.npz`, reading only those two arrays (a scores file
    may hold a dense influence matrix); `UNKNOWN_RUNS` for any other file."""
    if not str(path).endswith(".npz"):
        return UNKNOWN_RUNS
    with np.load(path) as arrays:
        if "subset_ratios" not in arrays.files or "num_runs_by_ratio" not in arrays.files:
            return UNKNOWN_RUNS
        return runs_per_ratio(arrays["subset_ratios"], arrays["num_runs_by_ratio"])
