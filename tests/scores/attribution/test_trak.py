"""Last-layer TRAK's linear algebra against the direct formula on tiny features."""

import numpy as np
import pytest

from heldout.errors import UsageError
from heldout.scores.attribution.lds import compute_lds, predicted_outputs
from heldout.scores.attribution.trak import (
    LastLayerFeatures,
    LastLayerTrak,
    compute_trak_model,
    gradient_features,
)


def _features(rng, n, d=3, classes=4):
    return LastLayerFeatures(
        rng.normal(size=(n, d)).astype(np.float32),
        rng.normal(size=(n, classes)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
    )


def _direct_tau(train, test, ridge):
    def g(f):
        h1 = np.concatenate([f.penultimate, np.ones((f.num_examples, 1))], axis=1)
        return np.stack([np.outer(h1[i], f.output_gradient[i]).ravel() for i in range(len(h1))])

    big_g, test_g = g(train).astype(np.float64), g(test).astype(np.float64)
    gram = big_g.T @ big_g
    lam = ridge * np.trace(gram) / gram.shape[0]
    inverse = np.linalg.inv(gram + lam * np.eye(gram.shape[0]))
    p = 1.0 / (1.0 + np.exp(-train.margin.astype(np.float64)))
    return test_g @ inverse @ big_g.T * (1.0 - p)[None, :]


def test_gradient_features_are_the_outer_product_weights_then_bias():
    rng = np.random.default_rng(0)
    f = _features(rng, 5)
    g = gradient_features(f)
    assert g.shape == (5, f.dimension) == (5, 16)
    np.testing.assert_allclose(
        g[2, :12].reshape(3, 4), np.outer(f.penultimate[2], f.output_gradient[2])
    )
    np.testing.assert_allclose(g[2, 12:], f.output_gradient[2])


@pytest.mark.parametrize("ridge", [1e-3, 0.5])
def test_tau_and_its_predictions_equal_the_direct_formula(ridge):
    rng = np.random.default_rng(1)
    models = []
    expected = 0.0
    for _ in range(3):
        train, test = _features(rng, 40), _features(rng, 7)
        models.append(compute_trak_model(train, test, ridge))
        expected = expected + _direct_tau(train, test, ridge) / 3
    trak = LastLayerTrak(models, (0, 1, 2))
    assert trak.shape == (7, 40)
    np.testing.assert_allclose(trak.dense(), expected, rtol=1e-4, atol=1e-5)
    masks = rng.random((9, 40)) < 0.5
    np.testing.assert_allclose(
        predicted_outputs(trak, masks), masks @ expected.T, rtol=1e-4, atol=1e-4
    )
    outputs = rng.normal(size=(9, 7))
    implicit, dense = compute_lds(trak, masks, outputs), compute_lds(trak.dense(), masks, outputs)
    np.testing.assert_allclose(implicit.per_test, dense.per_test, atol=1e-6)


def test_mismatched_dimensions_too_large_models_and_bad_ridge_are_refused(monkeypatch):
    rng = np.random.default_rng(2)
    with pytest.raises(UsageError, match="not of one model"):
        compute_trak_model(_features(rng, 10), _features(rng, 3, d=2))
    from heldout.scores.attribution import trak

    monkeypatch.setattr(trak, "MAX_DIMENSION", 15)
    with pytest.raises(UsageError, match="16 x 16 .* projection"):
        compute_trak_model(_features(rng, 10), _features(rng, 3))
    monkeypatch.undo()
    with pytest.raises(UsageError, match="ridge"):
        compute_trak_model(_features(rng, 10), _features(rng, 3), ridge=0.0)
    huge = _features(rng, 10)
    huge.penultimate[:] = 1e25
    with pytest.raises(UsageError, match="overflows"):
        compute_trak_model(huge, _features(rng, 3))
    bad = _features(rng, 10)
    bad.margin[0] = np.nan
    with pytest.raises(UsageError, match="NaN"):
        compute_trak_model(bad, _features(rng, 3))
    with pytest.raises(UsageError, match="inconsistent"):
        LastLayerFeatures(np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3))
