"""heldout._core.ranks: the one rank-statistics module, checked against scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from heldout._core.ranks import (
    average_ranks,
    average_ranks_columns,
    defined_pairs,
    kendall_tau_b,
    pearson,
    spearman,
    spearman_columns,
)


def _tied(n, seed):
    rng = np.random.default_rng(seed)
    a = np.round(rng.random(n), 1)  # about 11 distinct values: many ties
    b = np.round(a + rng.normal(0, 0.3, n), 1)
    return a, b


@pytest.mark.parametrize("seed", range(4))
def test_average_ranks_equal_scipy_rankdata_with_ties(seed):
    a, _ = _tied(200, seed)
    np.testing.assert_array_equal(average_ranks(a), stats.rankdata(a))
    assert average_ranks(a).dtype == np.float64
    np.testing.assert_array_equal(average_ranks([10, 20, 20, 5]), [2, 3.5, 3.5, 1])
    assert average_ranks(np.array([])).size == 0


@pytest.mark.parametrize("seed", range(4))
def test_spearman_and_kendall_equal_scipy(seed):
    a, b = _tied(300, seed)
    rho, count = spearman(a, b)
    assert count == 300
    assert rho == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    tau = kendall_tau_b(a, b)
    assert tau == pytest.approx(stats.kendalltau(a, b, variant="b").statistic, abs=1e-12)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)


def test_nan_on_either_side_is_left_out():
    a, b = _tied(100, 7)
    a_nan, b_nan = a.copy(), b.copy()
    a_nan[::7] = np.nan
    b_nan[3::11] = np.nan
    keep = ~np.isnan(a_nan) & ~np.isnan(b_nan)
    kept_a, kept_b = defined_pairs(a_nan, b_nan)
    np.testing.assert_array_equal(kept_a, a[keep])
    np.testing.assert_array_equal(kept_b, b[keep])
    rho, count = spearman(a_nan, b_nan)
    assert count == int(keep.sum()) < 100
    assert rho == pytest.approx(stats.spearmanr(a[keep], b[keep]).statistic, abs=1e-12)
    assert kendall_tau_b(a_nan, b_nan) == pytest.approx(
        stats.kendalltau(a[keep], b[keep], variant="b").statistic, abs=1e-12
    )


def test_min_count_and_constant_sides_give_nan():
    a, b = np.array([1.0, 2.0, np.nan, 3.0]), np.array([2.0, 1.0, 5.0, np.nan])
    rho, count = spearman(a, b)  # two defined entries, below the default min_count of 3
    assert math.isnan(rho) and count == 2
    rho, count = spearman(a, b, min_count=2)
    assert rho == pytest.approx(-1.0) and count == 2
    assert math.isnan(kendall_tau_b(a, b))
    assert kendall_tau_b(a, b, min_count=2) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.ones(5), np.arange(5.0))[0])
    assert math.isnan(kendall_tau_b(np.ones(5), np.arange(5.0)))
    assert math.isnan(pearson(np.ones(5), np.arange(5.0)))
    assert math.isnan(pearson(np.array([1.0]), np.array([2.0])))


@pytest.mark.parametrize("seed", range(4))
def test_column_ranks_and_spearman_equal_the_one_vector_versions(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, (25, 12)).astype(float)  # many ties
    b = np.round(rng.normal(size=(25, 12)), 1)
    a[rng.random(a.shape) < 0.03] = np.nan  # some columns go one by one
    b[:, 0] = 2.0  # constant: NaN
    rho = spearman_columns(a, b)
    expected = [spearman(a[:, i], b[:, i])[0] for i in range(12)]
    np.testing.assert_allclose(rho, expected, atol=1e-12)
    assert math.isnan(rho[0])
    plain = b[:, 1:]
    ranks = np.stack([average_ranks(plain[:, i]) for i in range(plain.shape[1])], axis=1)
    np.testing.assert_array_equal(average_ranks_columns(plain), ranks)
    assert np.isnan(spearman_columns(a[:2], b[:2])).all()  # below min_count
