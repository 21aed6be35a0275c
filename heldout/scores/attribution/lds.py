"""The linear datamodeling score (LDS) of an attribution, from evaluation runs.

An attribution tau[t, j] predicts the output of test example t of a run trained on the
set S as g(t) = sum_{j in S} tau[t, j]. LDS(t) is Spearman's rho, over the evaluation
runs, between that prediction and the run's actual output; LDS is its mean over test
examples, with a bootstrap interval over test examples.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol, runtime_checkable

import numpy as np

from heldout._core.ranks import spearman_columns
from heldout.errors import UsageError

__all__ = [
    "BLOCK_BYTES",
    "ImplicitAttribution",
    "LdsResult",
    "SparseAttribution",
    "compute_lds",
    "fitting_masks",
    "predicted_outputs",
]

BLOCK_BYTES = 64 << 20  # the temporary of one block of runs or test examples, about
TRANSPOSED_BLOCK_BYTES = 4 * BLOCK_BYTES  # a top-k prediction's block of runs' masks
BOOTSTRAP_SAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class SparseAttribution:
    """A top-k attribution: for each test example, k training indices and their values.

    Attributes:
      index: int [n_test, k], positions in the full training split.
      value: float [n_test, k], tau[t, index[t, i]]; every other entry of row t is 0.
      num_train: n_train, the size of the full training split.
    """

    index: np.ndarray
    value: np.ndarray
    num_train: int

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.index.shape[0]), int(self.num_train))


@runtime_checkable
class ImplicitAttribution(Protocol):
    """An attribution held in factors (last-layer TRAK, the holdout influence of the
    ceiling) that predicts the runs' outputs itself, never materialising tau."""

    @property
    def shape(self) -> tuple[int, int]: ...

    def predicted_outputs(self, masks: np.ndarray) -> np.ndarray: ...


Attribution = np.ndarray | SparseAttribution | ImplicitAttribution


@dataclasses.dataclass(frozen=True)
class LdsResult:
    """The LDS of one attribution over one set of evaluation runs.

    Attributes:
      per_test: float64 [n_test], LDS(t); NaN where undefined (fewer than 3 runs, or a
        constant prediction or output over the runs).
      lds: the mean of the defined `per_test` (NaN if none is defined).
      ci_low, ci_high: the bootstrap 95% interval of `lds` over test examples.
      num_runs: the evaluation runs behind every LDS(t).
      num_test: the test examples whose LDS(t) is defined.
    """

    per_test: np.ndarray
    lds: float
    ci_low: float
    ci_high: float
    num_runs: int
    num_test: int


def _block_rows(row_bytes: int, total: int) -> int:
    return max(1, min(total, BLOCK_BYTES // max(1, row_bytes)))


def fitting_masks(masks: np.ndarray, num_train: int) -> np.ndarray:
    """bool [R, num_train] masks, the one check every way of predicting outputs makes.

    Raises:
      UsageError: the masks' n_train is not the attribution's.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 2 or masks.shape[1] != num_train:
        raise UsageError(
            f"masks of shape {masks.shape} do not fit an attribution over "
            f"{num_train} training examples"
        )
    return masks


def predicted_outputs(attribution: Attribution, masks: np.ndarray) -> np.ndarray:
    """g_r(t) = sum_{j in S_r} tau[t, j] for every run r and test example t.

    Args:
      attribution: dense float [n_test, n_train], a `SparseAttribution`, or an
        `ImplicitAttribution` (which predicts them itself).
      masks: bool [R, n_train], True where run r trained on training example j.

    Returns:
      float32 [R, n_test]. Dense: a float32 GEMM in blocks of runs (each block's masks
      converted to float32 once); sparse: a gather of each test example's k training
      examples from a block of runs' transposed masks, in blocks of test examples.

    Raises:
      UsageError: the masks' n_train is not the attribution's.
    """
    if isinstance(attribution, ImplicitAttribution):
        return attribution.predicted_outputs(masks)
    masks = fitting_masks(masks, attribution.shape[1])
    num_runs, num_test = masks.shape[0], attribution.shape[0]
    out = np.empty((num_runs, num_test), dtype=np.float32)
    if isinstance(attribution, SparseAttribution):
        _sparse_predicted(attribution, masks, out)
        return out
    tau_t = np.asarray(attribution, dtype=np.float32).T
    # Tall blocks keep the GEMM near its full rate; the float32 block is at most an eighth
    # of the attribution's own size beyond BLOCK_BYTES.
    budget = max(BLOCK_BYTES, tau_t.nbytes // 8)
    step = max(1, min(num_runs, budget // max(1, masks.shape[1] * 4)))
    for start in range(0, num_runs, step):
        block = masks[start : start + step].astype(np.float32)
        np.matmul(block, tau_t, out=out[start : start + step])
    return out


def _sparse_predicted(attribution: SparseAttribution, masks: np.ndarray, out: np.ndarray) -> None:
    """Fills `out` [R, n_test]: per block of runs, their masks transposed (each training
    example's runs contiguous), then per block of test examples a gather of the k rows of
    each test example, weighted by its values. Nothing of size [R, n_train] is made but
    the bool block, and nothing of [n_test, n_train] at all."""
    index = np.asarray(attribution.index, dtype=np.int64)
    value = np.asarray(attribution.value, dtype=np.float32)
    num_runs, num_train = masks.shape
    num_test, k = index.shape
    # The transposed bool block: wide enough that each gathered row is a few cache lines.
    run_step = max(1, min(num_runs, TRANSPOSED_BLOCK_BYTES // max(1, num_train)))
    for run_start in range(0, num_runs, run_step):
        by_example = np.ascontiguousarray(masks[run_start : run_start + run_step].T)
        runs = by_example.shape[1]
        test_step = _block_rows(k * runs * 5, num_test)  # gathered bool + float32 copy
        for start in range(0, num_test, test_step):
            rows = index[start : start + test_step]
            taken = by_example[rows]  # [t, k, runs]
            predicted = np.einsum(
                "tkr,tk->rt", taken, value[start : start + test_step], dtype=np.float32
            )
            out[run_start : run_start + runs, start : start + test_step] = predicted


def bootstrap_mean_interval(
    values: np.ndarray, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES
) -> tuple[float, float]:
    """The percentile bootstrap 95% interval of the mean of `values` (NaN if empty)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for i in range(samples):
        means[i] = values[rng.integers(0, values.size, values.size)].mean()
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def compute_lds(
    attribution: Attribution,
    masks: np.ndarray,
    outputs: np.ndarray,
    seed: int = 0,
) -> LdsResult:
    """The LDS of an attribution over evaluation runs.

    Args:
      attribution: dense float [n_test, n_train], or a `SparseAttribution`.
      masks: bool [R, n_train], the evaluation runs' training sets.
      outputs: float [R, n_test], the runs' actual outputs (margins, or 0/1 correctness,
        whose ties get average ranks); NaN marks an output not known.
      seed: of the bootstrap over test examples.

    Returns:
      The `LdsResult`.

    Raises:
      UsageError: the shapes do not agree.
    """
    outputs = np.asarray(outputs)
    if outputs.shape != (np.shape(masks)[0], attribution.shape[0]):
        raise UsageError(
            f"outputs of shape {outputs.shape} do not fit {np.shape(masks)[0]} runs "
            f"and {attribution.shape[0]} test examples"
        )
    predicted = predicted_outputs(attribution, masks)
    per_test = np.full(attribution.shape[0], np.nan)
    step = _block_rows(outputs.shape[0] * 8 * 8, per_test.size)  # float64 ranks and sorts
    for start in range(0, per_test.size, step):
        per_test[start : start + step] = spearman_columns(
            predicted[:, start : start + step], outputs[:, start : start + step]
        )
    defined = per_test[~np.isnan(per_test)]
    lds = float(defined.mean()) if defined.size else math.nan
    low, high = bootstrap_mean_interval(defined, seed)
    return LdsResult(per_test, lds, low, high, int(outputs.shape[0]), int(defined.size))
