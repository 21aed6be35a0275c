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

from heldout._core.ranks import spearman
from heldout.errors import UsageError

__all__ = [
    "BLOCK_BYTES",
    "ImplicitAttribution",
    "LdsResult",
    "SparseAttribution",
    "compute_lds",
    "predicted_outputs",
]

BLOCK_BYTES = 64 << 20  # the temporary of one block of runs or test examples, about
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


def predicted_outputs(attribution: Attribution, masks: np.ndarray) -> np.ndarray:
    """g_r(t) = sum_{j in S_r} tau[t, j] for every run r and test example t.

    Args:
      attribution: dense float [n_test, n_train], a `SparseAttribution`, or an
        `ImplicitAttribution` (which predicts them itself).
      masks: bool [R, n_train], True where run r trained on training example j.

    Returns:
      float32 [R, n_test]. Dense: a float32 GEMM in blocks of runs; sparse: a gather of
      each test example's k columns of the masks, in blocks of test examples.

    Raises:
      UsageError: the masks' n_train is not the attribution's.
    """
    if isinstance(attribution, ImplicitAttribution):
        return attribution.predicted_outputs(masks)
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 2 or masks.shape[1] != attribution.shape[1]:
        raise UsageError(
            f"masks of shape {masks.shape} do not fit an attribution over "
            f"{attribution.shape[1]} training examples"
        )
    num_runs, num_test = masks.shape[0], attribution.shape[0]
    out = np.empty((num_runs, num_test), dtype=np.float32)
    if isinstance(attribution, SparseAttribution):
        index = np.asarray(attribution.index, dtype=np.int64)
        value = np.asarray(attribution.value, dtype=np.float32)
        k = index.shape[1]
        step = _block_rows(num_runs * k * 5, num_test)
        for start in range(0, num_test, step):
            rows = index[start : start + step]
            taken = masks[:, rows.ravel()].reshape(num_runs, rows.shape[0], k)
            out[:, start : start + step] = np.einsum(
                "rtk,tk->rt", taken, value[start : start + step], dtype=np.float32
            )
        return out
    tau_t = np.asarray(attribution, dtype=np.float32).T
    step = _block_rows(masks.shape[1] * 4, num_runs)
    for start in range(0, num_runs, step):
        block = masks[start : start + step].astype(np.float32)
        np.matmul(block, tau_t, out=out[start : start + step])
    return out


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
    for t in range(per_test.size):
        per_test[t] = spearman(predicted[:, t], outputs[:, t])[0]
    defined = per_test[~np.isnan(per_test)]
    lds = float(defined.mean()) if defined.size else math.nan
    low, high = bootstrap_mean_interval(defined, seed)
    return LdsResult(per_test, lds, low, high, int(outputs.shape[0]), int(defined.size))
