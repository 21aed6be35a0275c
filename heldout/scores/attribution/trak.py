"""Last-layer TRAK from per-example features arrays: the linear algebra, without TensorFlow.

A model's feature of example i is the gradient of its logit margin phi_i with respect to
the final linear layer's weights and bias, vec(outer([h_i, 1], dphi_i/dz)); TRAK scores
tau(t, j) = g_t^T (G^T G + lambda I)^{-1} g_j (1 - sigmoid(phi_j)), averaged over models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.linalg
from scipy.linalg.blas import ssyrk

from heldout.errors import UsageError
from heldout.scores.attribution.lds import fitting_masks

__all__ = [
    "DEFAULT_RIDGE",
    "MAX_DIMENSION",
    "LastLayerFeatures",
    "LastLayerTrak",
    "TrakModel",
    "compute_trak_model",
    "gradient_features",
]

DEFAULT_RIDGE = 1e-3  # lambda as a fraction of the mean diagonal of G^T G
MAX_DIMENSION = 16384  # (d + 1) * classes; G^T G is held in float64 (2 GiB at the limit)
BLOCK_ROWS = 4096  # examples whose features are expanded at a time (float32)


@dataclasses.dataclass(frozen=True)
class LastLayerFeatures:
    """What one model says about a set of examples, enough for their gradient features.

    Attributes:
      penultimate: float32 [n, d], h: the input of the final linear layer.
      output_gradient: float32 [n, classes], dphi/dz: 1 at the label, minus the softmax
        over the other classes elsewhere.
      margin: float32 [n], phi = z_y - logsumexp_{k != y} z_k.
    """

    penultimate: np.ndarray
    output_gradient: np.ndarray
    margin: np.ndarray

    def __post_init__(self):
        n = self.penultimate.shape[0]
        if (
            self.penultimate.ndim != 2
            or self.output_gradient.ndim != 2
            or self.output_gradient.shape[0] != n
            or np.shape(self.margin) != (n,)
        ):
            raise UsageError(
                f"features of inconsistent shapes: penultimate {self.penultimate.shape}, "
                f"output gradient {self.output_gradient.shape}, margin {np.shape(self.margin)}"
            )

    @property
    def num_examples(self) -> int:
        return int(self.penultimate.shape[0])

    @property
    def dimension(self) -> int:
        """(d + 1) * classes: the weights' and the bias's gradient."""
        return (self.penultimate.shape[1] + 1) * self.output_gradient.shape[1]


def gradient_features(features: LastLayerFeatures, start: int = 0, stop: int | None = None):
    """float32 [stop - start, (d + 1) * classes]: vec(outer([h, 1], dphi/dz)) per example.

    The flattening is row-major over [d + 1, classes], the weights' [d, classes] layout
    first and the bias last, as `snt.Linear` holds `w` and `b`.
    """
    h = np.asarray(features.penultimate[start:stop], dtype=np.float32)
    s = np.asarray(features.output_gradient[start:stop], dtype=np.float32)
    h1 = np.concatenate([h, np.ones((h.shape[0], 1), np.float32)], axis=1)
    return (h1[:, :, None] * s[:, None, :]).reshape(h.shape[0], -1)


def _blocks(n: int, rows: int = BLOCK_ROWS):
    for start in range(0, n, rows):
        yield start, min(n, start + rows)


@dataclasses.dataclass(frozen=True)
class TrakModel:
    """One checkpoint's TRAK, held as its two sides (tau = test_side @ train_side^T).

    Attributes:
      test_side: float32 [n_test, D], G_test (G^T G + lambda I)^{-1}.
      train: the training examples' features (their gradient features are expanded in
        blocks when needed, times 1 - sigmoid(phi_j)).
      ridge: lambda used (absolute).
    """

    test_side: np.ndarray
    train: LastLayerFeatures
    ridge: float

    def train_weight(self) -> np.ndarray:
        """float32 [n_train]: 1 - sigmoid(phi_j), TRAK's Q."""
        phi = np.asarray(self.train.margin, dtype=np.float64)
        return (1.0 / (1.0 + np.exp(phi))).astype(np.float32)  # = 1 - sigmoid(phi)

    def masked_train_sum(self, masks: np.ndarray) -> np.ndarray:
        """float32 [R, D]: sum over j in S_r of (1 - p_j) g_j, for every run r."""
        weight = self.train_weight()
        total = np.zeros((masks.shape[0], self.test_side.shape[1]), np.float64)
        for start, stop in _blocks(self.train.num_examples):
            block = masks[:, start:stop].astype(np.float32) * weight[start:stop]
            total += block @ gradient_features(self.train, start, stop)
        return total.astype(np.float32)


def compute_trak_model(
    train: LastLayerFeatures, test: LastLayerFeatures, ridge: float = DEFAULT_RIDGE
) -> TrakModel:
    """One checkpoint's TRAK from its features of all training and the test examples.

    Args:
      train: features of every training example (G: the full training split, whichever
        subset the model was trained on, as TRAK does).
      test: features of the test examples scored.
      ridge: lambda relative to the mean diagonal of G^T G (a tiny ridge: dead ReLU units
        and a softmax's gradients summing to zero leave G^T G singular).

    Returns:
      The `TrakModel`.

    Raises:
      UsageError: the features of train and test differ in dimension, the dimension is
        above `MAX_DIMENSION`, the features or G^T G are not finite, or the ridge is not
        positive.
    """
    dimension = train.dimension
    if test.dimension != dimension:
        raise UsageError(
            f"training features of dimension {dimension} and test features of "
            f"{test.dimension} are not of one model"
        )
    if dimension > MAX_DIMENSION:
        raise UsageError(
            f"last-layer TRAK needs the {dimension} x {dimension} matrix G^T G (the final "
            f"layer's (d + 1) x classes gradients); above {MAX_DIMENSION} it needs a "
            "projection, which this baseline does not make"
        )
    if not ridge > 0:
        raise UsageError(f"the ridge must be positive, got {ridge}")
    for name, features in (("training", train), ("test", test)):
        arrays = (features.penultimate, features.output_gradient, features.margin)
        if not all(np.all(np.isfinite(a)) for a in arrays):
            raise UsageError(
                f"the {name} examples' last-layer features have NaN or infinite values"
            )
    gram = np.zeros((dimension, dimension), np.float64)  # its lower triangle is what counts
    block_gram = np.zeros((dimension, dimension), np.float32, order="F")  # upper stays 0
    for start, stop in _blocks(train.num_examples):
        block = gradient_features(train, start, stop)
        # float32 G_b^T G_b into the lower triangle, summed in float64
        block_gram = ssyrk(1.0, block.T, beta=0.0, c=block_gram, overwrite_c=1, lower=1)
        gram += block_gram
    if not np.all(np.isfinite(np.diag(gram))):
        raise UsageError(
            "G^T G overflows float32: the last-layer features reach "
            f"{float(np.abs(train.penultimate).max()):.3g} (a model that was never trained?)"
        )
    absolute = float(ridge * max(np.trace(gram) / dimension, np.finfo(np.float32).tiny))
    gram[np.diag_indices(dimension)] += absolute
    factor = scipy.linalg.cho_factor(gram, lower=True, overwrite_a=True, check_finite=True)
    test_side = np.empty((test.num_examples, dimension), np.float32)
    for start, stop in _blocks(test.num_examples):
        block = gradient_features(test, start, stop).astype(np.float64)
        test_side[start:stop] = scipy.linalg.cho_solve(factor, block.T).T
    return TrakModel(test_side, train, absolute)


@dataclasses.dataclass(frozen=True)
class LastLayerTrak:
    """TRAK averaged over checkpoints, never held as a dense [n_test, n_train] matrix.

    `heldout.scores.attribution.lds` asks it for its predictions of the runs' outputs:
    sum_{j in S_r} tau(t, j) = (1/N) sum_m (masked train sum)_m @ test_side_m^T.

    Attributes:
      models: the per-checkpoint `TrakModel`s.
      run_ids: the runs the checkpoints came from (estimation runs only).
    """

    models: Sequence[TrakModel]
    run_ids: tuple[int, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        first = self.models[0]
        return (int(first.test_side.shape[0]), first.train.num_examples)

    def predicted_outputs(self, masks: np.ndarray) -> np.ndarray:
        """float32 [R, n_test]: g_r(t) = sum_{j in S_r} tau(t, j) for bool masks [R, n_train]."""
        masks = fitting_masks(masks, self.shape[1])
        total = np.zeros((masks.shape[0], self.shape[0]), np.float32)
        for model in self.models:
            total += model.masked_train_sum(masks) @ model.test_side.T
        total /= np.float32(len(self.models))
        return total

    def dense(self) -> np.ndarray:
        """float32 [n_test, n_train], tau itself (for small problems and exports)."""
        tau = np.zeros(self.shape, np.float32)
        for model in self.models:
            weight = model.train_weight()
            for start, stop in _blocks(model.train.num_examples):
                block = gradient_features(model.train, start, stop) * weight[start:stop, None]
                tau[:, start:stop] += model.test_side @ block.T
        tau /= np.float32(len(self.models))
        return tau
