"""`plan_runs`: an experiment's runs read once, and its run budget planned score by score.

Reads the aux arrays of the ratios the scores need into a `SplitHalfAccumulator` and
predicts, per score, the runs a target split-half reliability needs
(`heldout.scores.uncertainty.reliability`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from heldout.errors import ScoresError, UsageError
from heldout.release.reading import read_runs
from heldout.scores.request import default_score_ratio, known_split_sizes
from heldout.scores.uncertainty.budget import RunBudget, predict_run_budget
from heldout.scores.uncertainty.reliability import RELIABILITY_SCORES, SplitHalfAccumulator

__all__ = ["RunPlan", "plan_runs"]


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """`plan_runs`'s answer: one `RunBudget` per score, and what was read."""

    experiment: str
    scores: tuple[RunBudget, ...]
    skipped: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "experiment": self.experiment,
            "definition": (
                "split-half reliability: Spearman rho between the scores from two random "
                "halves of the runs of every ratio, averaged over repeats; at m x, the "
                "prediction for an experiment with m times the runs per ratio"
            ),
            "skipped_runs": len(self.skipped),
            "scores": [plan.to_json() for plan in self.scores],
        }


def plan_runs(
    experiment,
    scores: Sequence[str] = ("cscore", "memorization"),
    subset_ratio: float | None = None,
    repeats: int = 10,
    target_rho: float = 0.9,
    seed: int = 0,
    workers: int | None = None,
    skip_bad_runs: bool = False,
    on_bad_run: Callable | None = None,
    progress: bool | Callable = False,
) -> RunPlan:
    """Reads an experiment's aux arrays once and plans its run budget, score by score.

    Args:
      experiment: from `heldout.release.layout.open_experiment`.
      scores: any of `RELIABILITY_SCORES`.
      subset_ratio: memorization's ratio; default as in `heldout.scores.experiment`.
      repeats: random splits into halves.
      target_rho: the split-half reliability to reach.
      seed: fixes the splits and the simulations.
      workers, skip_bad_runs, on_bad_run, progress: see `heldout.release.reading.read_runs`.

    Returns:
      A `RunPlan`.

    Raises:
      UsageError: an unknown score, or a target outside (0, 1).
      ScoresError: no runs, or a ratio with fewer than 2 runs (no halves to compare).
    """
    unknown = sorted(set(scores) - set(RELIABILITY_SCORES))
    if unknown or not scores:
        raise UsageError(f"unknown scores {unknown}; choose from {list(RELIABILITY_SCORES)}")
    if not 0.0 < target_rho < 1.0:
        raise UsageError(f"the target reliability must be between 0 and 1, got {target_rho}")
    present = experiment.subset_ratios
    if not present:
        raise ScoresError(f"{experiment.path}: no runs")
    score_ratio = None
    if "memorization" in scores:
        if subset_ratio is None:
            score_ratio = default_score_ratio(present)
        else:
            matching = [r for r in present if round(r, 9) == round(subset_ratio, 9)]
            if not matching:
                raise ScoresError(
                    f"{experiment.path}: no runs at subset ratio {subset_ratio}; ratios "
                    f"present: {list(present)}"
                )
            score_ratio = matching[0]
    ratios = present if "cscore" in scores else (score_ratio,)
    runs_by_ratio = {ratio: [run.aux_path for run in experiment.runs_at(ratio)] for ratio in ratios}
    few = {ratio: len(keys) for ratio, keys in runs_by_ratio.items() if len(keys) < 2}
    if few:
        raise ScoresError(
            f"{experiment.path}: split halves need at least 2 runs per ratio; ratios with "
            f"fewer: {few}"
        )
    halves = SplitHalfAccumulator(runs_by_ratio, repeats, score_ratio, seed)
    skipped: list[str] = []

    def record_bad_run(run, error) -> None:
        skipped.append(str(error))
        if on_bad_run is not None:
            on_bad_run(run, error)

    runs = [run for ratio in ratios for run in experiment.runs_at(ratio)]
    for run, aux in read_runs(
        runs,
        workers=workers,
        skip_bad_runs=skip_bad_runs,
        on_bad_run=record_bad_run,
        progress=progress,
        size_check=known_split_sizes(experiment),
    ):
        halves.add(run.aux_path, aux)
    if halves.num_train is None:
        raise ScoresError(f"{experiment.path}: no readable runs ({len(skipped)} skipped)")
    plans = tuple(
        predict_run_budget(halves, score, target_rho, seed=seed)
        for score in RELIABILITY_SCORES
        if score in scores
    )
    return RunPlan(experiment=experiment.name, scores=plans, skipped=tuple(skipped))
