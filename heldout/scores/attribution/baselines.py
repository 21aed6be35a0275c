"""Reference attributions for the LDS table, estimated from the estimation runs only.

Random tau (an LDS near 0 says the metric is not biased) and the holdout influence: the
mean output of test example t over runs with j trained minus over runs with j held out
(binary with correctness, margin-based with margins). For a top-k attribution too large
to compare densely, both are taken on the attribution's own support (`*_on_support`).
"""

from __future__ import annotations

import numpy as np

from heldout.errors import UsageError
from heldout.scores.attribution.lds import (
    BLOCK_BYTES,
    TRANSPOSED_BLOCK_BYTES,
    SparseAttribution,
)

__all__ = [
    "holdout_influence",
    "holdout_influence_on_support",
    "random_attribution",
    "random_on_support",
    "runs_in_and_out",
]


def runs_in_and_out(masks, outputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked (bool masks, float32 outputs) of the same runs, and per training example the
    number of runs that trained on it and that held it out (float32), which every holdout
    influence divides by.

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
    return masks, outputs, count_in, np.float32(masks.shape[0]) - count_in


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
    masks, outputs, count_in, count_out = runs_in_and_out(masks, outputs)
    sum_in = np.zeros((outputs.shape[1], masks.shape[1]), dtype=np.float32)  # the big one
    step = max(1, BLOCK_BYTES // max(1, 4 * masks.shape[1]))  # runs converted to float32
    for start in range(0, masks.shape[0], step):
        block = masks[start : start + step].astype(np.float32)
        sum_in += outputs[start : start + step].T @ block
    sum_all = outputs.sum(axis=0, dtype=np.float64).astype(np.float32)[:, None]
    defined = (count_in > 0) & (count_out > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = sum_in / count_in
        sum_in -= sum_all  # in place: minus the sum over runs holding j out
        sum_in /= count_out
        tau += sum_in
    tau[:, ~defined] = 0.0
    return tau


def random_on_support(attribution: SparseAttribution, seed: int = 0) -> SparseAttribution:
    """Independent standard normal values on a top-k attribution's own indices."""
    rng = np.random.default_rng(seed)
    value = rng.standard_normal(attribution.index.shape, dtype=np.float32)
    return SparseAttribution(attribution.index, value, attribution.num_train)


def holdout_influence_on_support(
    masks: np.ndarray, outputs: np.ndarray, support: SparseAttribution
) -> SparseAttribution:
    """`holdout_influence` at the (t, j) pairs of a top-k attribution only, in blocks.

    Args:
      masks: bool [R, n_train] of the ESTIMATION runs.
      outputs: float [R, n_test] of the same runs.
      support: the attribution whose `index` [n_test, k] gives the pairs.

    Returns:
      The same indices with the holdout influence as values (0 where undefined).

    Raises:
      UsageError: the shapes disagree.
    """
    masks = np.asarray(masks, dtype=bool)
    outputs = np.asarray(outputs, dtype=np.float32)
    index = np.asarray(support.index, dtype=np.int64)
    if masks.shape != (outputs.shape[0], support.num_train) or outputs.shape[1] != index.shape[0]:
        raise UsageError(
            f"masks {masks.shape} and outputs {outputs.shape} do not fit a top-k attribution "
            f"over {index.shape[0]} test and {support.num_train} training examples"
        )
    num_runs, num_train = masks.shape
    count_in = masks.sum(axis=0).astype(np.float32)[index]
    count_out = np.float32(num_runs) - count_in
    sum_all = outputs.sum(axis=0, dtype=np.float64).astype(np.float32)[:, None]
    sum_in = np.zeros(index.shape, dtype=np.float32)
    run_step = max(1, TRANSPOSED_BLOCK_BYTES // max(1, num_train))  # transposed bool block
    for run_start in range(0, num_runs, run_step):
        by_example = np.ascontiguousarray(masks[run_start : run_start + run_step].T)
        block_outputs = outputs[run_start : run_start + run_step]
        step = max(1, BLOCK_BYTES // max(1, index.shape[1] * by_example.shape[1] * 5))
        for start in range(0, index.shape[0], step):
            taken = by_example[index[start : start + step]]  # [t, k, runs]
            sum_in[start : start + step] += np.einsum(
                "tkr,rt->tk", taken, block_outputs[:, start : start + step], dtype=np.float32
            )
    with np.errstate(divide="ignore", invalid="ignore"):
        value = sum_in / count_in - (sum_all - sum_in) / count_out
    value[(count_in == 0) | (count_out == 0)] = 0.0
    return SparseAttribution(index, value.astype(np.float32), support.num_train)
