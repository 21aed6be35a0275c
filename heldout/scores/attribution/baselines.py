"""Reference attributions for the LDS table, estimated from the estimation runs only.

Random tau (an LDS near 0 says the metric is not biased) and the holdout influence: the
mean output of test example t over runs with j trained minus over runs with j held out
(binary with correctness, margin-based with margins).
"""

from __future__ import annotations

import numpy as np

from heldout.errors import UsageError

__all__ = ["holdout_influence", "random_attribution"]


def random_attribution(num_test: int, num_train: int, seed: int = 0) -> np.ndarray:
    """float32 [num_test, num_train] of independent standard normal values."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((num_test, num_train), dtype=np.float32)


def holdout_influence(masks: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """tau[t, j] = mean output of t over runs training on j - over runs holding j out.

    Args:
      masks: bool [R, n_train] of the ESTIMATION runs.
      outputs: float [R, n_test] of the same runs (0/1 correctness or margins).

    Returns:
      float32 [n_test, n_train]; 0 in columns never trained on or never held out (an
      undefined influence predicts nothing).

    Raises:
      UsageError: the shapes disagree.
    """
    masks = np.asarray(masks, dtype=bool)
    outputs = np.asarray(outputs, dtype=np.float32)
    if masks.ndim != 2 or outputs.ndim != 2 or masks.shape[0] != outputs.shape[0]:
        raise UsageError(
            f"masks {masks.shape} and outputs {outputs.shape} are not of the same runs"
        )
    count_in = masks.sum(axis=0).astype(np.float32)
    count_out = np.float32(masks.shape[0]) - count_in
    sum_in = outputs.T @ masks.astype(np.float32)  # [n_test, n_train], float32: the big one
    sum_all = outputs.sum(axis=0, dtype=np.float64).astype(np.float32)[:, None]
    defined = (count_in > 0) & (count_out > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = sum_in / count_in
        sum_in -= sum_all  # in place: minus the sum over runs holding j out
        sum_in /= count_out
        tau += sum_in
    tau[:, ~defined] = 0.0
    return tau
