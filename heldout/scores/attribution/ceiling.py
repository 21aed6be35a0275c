"""The ceiling: the LDS of the holdout influence estimated from the first m estimation runs.

As m grows the holdout influence approaches what retraining can tell, so the curve shows
how far an attribution is from what more retrained runs would give. The influence is held
in factors (tau = outputs^T W), so a ladder of m costs a few small matrix products.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from heldout.errors import UsageError
from heldout.scores.attribution.baselines import runs_in_and_out
from heldout.scores.attribution.lds import LdsResult, compute_lds, fitting_masks

__all__ = [
    "Ceiling",
    "HoldoutInfluenceFactors",
    "ceiling_ladder",
    "compute_ceiling",
    "holdout_influence_factors",
]

FIRST_RUNG = 8


@dataclasses.dataclass(frozen=True)
class HoldoutInfluenceFactors:
    """The holdout influence tau[t, j] = sum_r outputs[r, t] * weights[r, j].

    weights[r, j] = 1/count_in_j where run r trained on j, -1/count_out_j where it held j
    out, 0 in columns never trained on or never held out (as `baselines.holdout_influence`).

    Attributes:
      outputs: float32 [R, n_test] of the estimation runs.
      weights: float32 [R, n_train].
    """

    outputs: np.ndarray
    weights: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.outputs.shape[1]), int(self.weights.shape[1]))

    def predicted_outputs(self, masks: np.ndarray) -> np.ndarray:
        """float32 [R_eval, n_test]: sum_{j in S_r} tau(t, j) = (masks @ weights^T) @ outputs."""
        masks = fitting_masks(masks, self.shape[1])
        mixing = masks.astype(np.float32) @ self.weights.T  # [R_eval, R]
        return mixing @ self.outputs

    def dense(self) -> np.ndarray:
        """float32 [n_test, n_train], tau itself."""
        return self.outputs.T @ self.weights


def holdout_influence_factors(masks: np.ndarray, outputs: np.ndarray) -> HoldoutInfluenceFactors:
    """The holdout influence of `baselines.holdout_influence`, in factors.

    Args:
      masks: bool [R, n_train] of estimation runs.
      outputs: float [R, n_test] of the same runs.

    Returns:
      The `HoldoutInfluenceFactors`.

    Raises:
      UsageError: the shapes disagree.
    """
    masks, outputs, count_in, count_out = runs_in_and_out(masks, outputs)
    defined = (count_in > 0) & (count_out > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.where(masks, 1.0 / count_in, -1.0 / count_out).astype(np.float32)
    weights[:, ~defined] = 0.0
    return HoldoutInfluenceFactors(outputs, weights)


def ceiling_ladder(num_runs: int, first: int = FIRST_RUNG) -> tuple[int, ...]:
    """8, 16, 32, ... below `num_runs`, then `num_runs` itself (just it if below 8)."""
    rungs, m = [], first
    while m < num_runs:
        rungs.append(m)
        m *= 2
    return (*rungs, int(num_runs)) if num_runs > 0 else ()


@dataclasses.dataclass(frozen=True)
class Ceiling:
    """The LDS of the holdout influence from the first `runs[i]` estimation runs.

    Attributes:
      runs: estimation runs behind each rung, increasing.
      results: the `LdsResult` of each rung (over the same evaluation runs).
    """

    runs: tuple[int, ...]
    results: tuple[LdsResult, ...]


def compute_ceiling(
    estimation_masks: np.ndarray,
    estimation_outputs: np.ndarray,
    evaluation_masks: np.ndarray,
    evaluation_outputs: np.ndarray,
    ladder: tuple[int, ...] | None = None,
    seed: int = 0,
) -> Ceiling:
    """The LDS of the holdout influence from the first m estimation runs, m on a ladder.

    Args:
      estimation_masks, estimation_outputs: [R_est, n_train] bool, [R_est, n_test], in the
        order the rungs take them (the first m rows).
      evaluation_masks, evaluation_outputs: the evaluation runs the LDS is scored on.
      ladder: the m values; None: `ceiling_ladder(R_est)`.
      seed: of the bootstrap intervals.

    Returns:
      The `Ceiling`.

    Raises:
      UsageError: a rung outside 1..R_est, or shapes that disagree.
    """
    total = int(np.shape(estimation_masks)[0])
    ladder = ceiling_ladder(total) if ladder is None else tuple(int(m) for m in ladder)
    if any(not 1 <= m <= total for m in ladder):
        raise UsageError(f"ceiling rungs {ladder} must lie in 1..{total} estimation runs")
    results = []
    for m in ladder:
        factors = holdout_influence_factors(estimation_masks[:m], estimation_outputs[:m])
        results.append(compute_lds(factors, evaluation_masks, evaluation_outputs, seed=seed))
    return Ceiling(ladder, tuple(results))
