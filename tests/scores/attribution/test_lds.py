"""The LDS against direct numpy/scipy formulas on planted linear datamodels."""

import math

import numpy as np
import pytest
from scipy import stats

from heldout.errors import UsageError
from heldout.scores.attribution import lds as lds_module
from heldout.scores.attribution.lds import SparseAttribution, compute_lds, predicted_outputs


def planted(num_runs, num_train=120, num_test=40, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    tau = rng.normal(size=(num_test, num_train)).astype(np.float32)
    masks = rng.random((num_runs, num_train)) < 0.5
    outputs = masks @ tau.T.astype(np.float64)
    outputs += noise * outputs.std() * rng.normal(size=outputs.shape)
    return tau, masks, outputs


def test_planted_linear_datamodel_scores_high():
    tau, masks, outputs = planted(400)
    result = compute_lds(tau, masks, outputs)
    assert result.lds >= 0.9
    assert result.ci_low <= result.lds <= result.ci_high
    assert result.num_runs == 400 and result.num_test == 40


def test_random_attribution_scores_near_zero():
    _, masks, outputs = planted(200, num_test=600, seed=1)
    random_tau = np.random.default_rng(7).normal(size=(600, 120))
    result = compute_lds(random_tau, masks, outputs)
    assert abs(result.lds) <= 0.02
    assert result.ci_low < 0 < result.ci_high


def test_per_test_is_scipy_spearman_with_tied_correctness():
    tau, masks, outputs = planted(60, noise=1.0, seed=2)
    correct = (outputs > np.median(outputs, axis=0)).astype(np.float32)  # many ties
    result = compute_lds(tau, masks, correct)
    predicted = masks.astype(np.float64) @ tau.T.astype(np.float64)
    for t in range(tau.shape[0]):
        expected = stats.spearmanr(predicted[:, t], correct[:, t]).statistic
        assert result.per_test[t] == pytest.approx(expected, abs=1e-5)


def test_constant_output_gives_nan_and_is_left_out_of_the_mean():
    tau, masks, outputs = planted(50, seed=3)
    outputs[:, 0] = 1.0
    result = compute_lds(tau, masks, outputs)
    assert math.isnan(result.per_test[0])
    assert result.num_test == tau.shape[0] - 1
    assert result.lds == pytest.approx(np.nanmean(result.per_test))


def test_sparse_equals_dense_with_zeros_elsewhere_in_small_blocks(monkeypatch):
    tau, masks, outputs = planted(30, seed=4)
    k = 7
    index = np.argsort(-np.abs(tau), axis=1)[:, :k]
    value = np.take_along_axis(tau, index, axis=1)
    dense = np.zeros_like(tau)
    np.put_along_axis(dense, index, value, axis=1)
    monkeypatch.setattr(lds_module, "BLOCK_BYTES", 1000)  # many blocks of both kinds
    monkeypatch.setattr(lds_module, "TRANSPOSED_BLOCK_BYTES", 500)
    sparse = SparseAttribution(index, value, tau.shape[1])
    np.testing.assert_allclose(
        predicted_outputs(sparse, masks), predicted_outputs(dense, masks), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        predicted_outputs(dense, masks), masks @ dense.T.astype(np.float64), rtol=1e-5, atol=1e-4
    )
    a = compute_lds(sparse, masks, outputs).per_test
    b = compute_lds(dense, masks, outputs).per_test
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_bootstrap_is_seeded():
    tau, masks, outputs = planted(40, noise=2.0, seed=5)
    first = compute_lds(tau, masks, outputs, seed=3)
    again = compute_lds(tau, masks, outputs, seed=3)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)


def test_shapes_that_disagree_are_refused():
    tau, masks, outputs = planted(20, seed=6)
    with pytest.raises(UsageError, match="masks"):
        predicted_outputs(tau, masks[:, :-1])
    with pytest.raises(UsageError, match="outputs"):
        compute_lds(tau, masks, outputs[:, :-1])
