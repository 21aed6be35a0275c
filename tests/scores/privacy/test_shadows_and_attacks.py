"""The attack definitions against direct formulas on small data: leave-one-out Gaussian fits,
the Gaussian log-likelihood ratio, offline LiRA's tail, the loss, NaN where shadows are few."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from heldout.errors import UsageError
from heldout.scores.privacy.attacks import (
    CORRECTNESS,
    STD_FLOOR,
    lira_offline,
    lira_online,
    loss_threshold,
)
from heldout.scores.privacy.shadows import ShadowSums


def runs(num_runs=12, num_train=9, seed=0):
    rng = np.random.default_rng(seed)
    masks = rng.random((num_runs, num_train)) < 0.5
    masks[:5, 0], masks[5:10, 0] = True, False  # example 0: enough of both sides
    statistic = (rng.normal(2.0, 1.5, (num_runs, num_train)) + 1.5 * masks).astype(np.float32)
    return masks, statistic


def summed(masks, statistic):
    sums = ShadowSums(masks.shape[1])
    for mask, values in zip(masks, statistic, strict=True):
        sums.add(mask, values)
    return sums


def direct_fit(masks, statistic, target, j):
    others = np.arange(len(masks)) != target
    inside = statistic[others & masks[:, j], j].astype(np.float64)
    outside = statistic[others & ~masks[:, j], j].astype(np.float64)
    return inside, outside


def test_fits_leave_the_target_out_and_match_numpy_mean_and_std():
    masks, statistic = runs()
    sums = summed(masks, statistic)
    for target in (0, 7, 11):
        fits = sums.fits_without(masks[target], statistic[target])
        for j in range(masks.shape[1]):
            inside, outside = direct_fit(masks, statistic, target, j)
            assert fits.count_in[j] == inside.size and fits.count_out[j] == outside.size
            if inside.size:
                assert fits.mean_in[j] == pytest.approx(inside.mean(), abs=1e-12)
                assert fits.std_in[j] == pytest.approx(inside.std(ddof=0), abs=1e-9)
            if outside.size:
                assert fits.mean_out[j] == pytest.approx(outside.mean(), abs=1e-12)
                assert fits.std_out[j] == pytest.approx(outside.std(ddof=0), abs=1e-9)


def test_online_lira_is_the_gaussian_log_likelihood_ratio_of_the_other_runs():
    masks, statistic = runs()
    sums = summed(masks, statistic)
    target = 3
    fits = sums.fits_without(masks[target], statistic[target])
    score = lira_online(statistic[target], fits, min_shadows=2)
    for j in range(masks.shape[1]):
        inside, outside = direct_fit(masks, statistic, target, j)
        if min(inside.size, outside.size) < 2:
            assert math.isnan(score[j])
            continue
        phi = float(statistic[target, j])
        expected = norm.logpdf(phi, inside.mean(), inside.std()) - norm.logpdf(
            phi, outside.mean(), outside.std()
        )
        assert score[j] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_a_planted_target_never_enters_its_own_shadows():
    masks, statistic = runs()
    statistic[4, 0] = 500.0  # run 4 trains on example 0 with an outlying statistic
    assert masks[4, 0]
    sums = summed(masks, statistic)
    fits = sums.fits_without(masks[4], statistic[4])
    score = lira_online(statistic[4], fits)[0]
    inside, outside = direct_fit(masks, statistic, 4, 0)
    phi = 500.0
    without = norm.logpdf(phi, inside.mean(), inside.std()) - norm.logpdf(
        phi, outside.mean(), outside.std()
    )
    with_target = np.append(inside, phi)
    included = norm.logpdf(phi, with_target.mean(), with_target.std()) - norm.logpdf(
        phi, outside.mean(), outside.std()
    )
    assert score == pytest.approx(without, rel=1e-9)
    assert abs(included - without) > 1e3  # had it been included, the score would differ
    # another target still sees run 4 among its shadows
    other = sums.fits_without(masks[0], statistic[0])
    assert other.mean_in[0] > 50.0


def test_too_few_shadows_give_nan_and_are_counted_never_zero():
    masks, statistic = runs(num_runs=10, num_train=4)
    masks[:, 1] = False
    masks[:3, 1] = True  # example 1: IN in 3 runs only
    masks[:, 2] = True
    masks[:4, 2] = False  # example 2: OUT in 4 runs (3 for a target among them)
    sums = summed(masks, statistic)
    fits = sums.fits_without(masks[9], statistic[9])
    online = lira_online(statistic[9], fits, min_shadows=4)
    offline = lira_offline(statistic[9], fits, min_shadows=4)
    assert math.isnan(online[1]) and not math.isnan(offline[1])  # offline needs OUT only
    assert not math.isnan(online[2]) and not math.isnan(offline[2])
    fits0 = sums.fits_without(masks[0], statistic[0])
    assert math.isnan(lira_online(statistic[0], fits0)[2])
    assert math.isnan(lira_offline(statistic[0], fits0)[2])


def test_offline_lira_is_minus_the_log_upper_tail_of_the_out_fit():
    masks, statistic = runs()
    sums = summed(masks, statistic)
    fits = sums.fits_without(masks[2], statistic[2])
    score = lira_offline(statistic[2], fits, min_shadows=2)
    _, outside = direct_fit(masks, statistic, 2, 0)
    expected = -norm.logsf(float(statistic[2, 0]), outside.mean(), outside.std())
    assert score[0] == pytest.approx(expected, rel=1e-9)
    far = lira_offline(fits.mean_out + 40 * fits.std_out, fits, min_shadows=2)
    assert np.all(far[~np.isnan(far)] > 700)  # the tail keeps resolution where the CDF is 1


def test_fix_variance_uses_one_median_std_per_side():
    masks, statistic = runs(num_runs=30, num_train=6, seed=2)
    sums = summed(masks, statistic)
    fits = sums.fits_without(masks[0], statistic[0])
    score = lira_online(statistic[0], fits, min_shadows=4, fix_variance=True)
    defined = (fits.count_in >= 4) & (fits.count_out >= 4)
    s_in, s_out = np.median(fits.std_in[defined]), np.median(fits.std_out[defined])
    expected = norm.logpdf(statistic[0], fits.mean_in, s_in) - norm.logpdf(
        statistic[0], fits.mean_out, s_out
    )
    np.testing.assert_allclose(score[defined], expected[defined], rtol=1e-9)


def test_constant_shadows_stay_finite_and_ordered():
    masks = np.array([[True], [True], [True], [False], [False], [False], [True]])
    correct = np.array([[1], [1], [1], [0], [1], [0], [1]], dtype=np.float32)
    sums = summed(masks, correct)
    fits = sums.fits_without(masks[6], correct[6])
    assert fits.std_in[0] == 0.0
    right = lira_online(np.array([1.0]), fits, min_shadows=3)[0]
    wrong = lira_online(np.array([0.0]), fits, min_shadows=3)[0]
    assert np.isfinite(right) and np.isfinite(wrong) and right > wrong
    assert right == pytest.approx(
        norm.logpdf(1.0, 1.0, STD_FLOOR) - norm.logpdf(1.0, 1 / 3, math.sqrt(2 / 9))
    )


def test_loss_threshold_is_minus_the_cross_entropy_of_the_margin():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (50, 4))
    labels = rng.integers(0, 4, 50)
    z_y = logits[np.arange(50), labels]
    others = np.where(np.eye(4, dtype=bool)[labels], -np.inf, logits)
    phi = z_y - np.logaddexp.reduce(others, axis=1)
    log_softmax = z_y - np.logaddexp.reduce(logits, axis=1)
    np.testing.assert_allclose(loss_threshold(phi), log_softmax, rtol=1e-12, atol=1e-12)
    assert np.isfinite(loss_threshold(np.array([-800.0, 800.0]))).all()
    np.testing.assert_array_equal(loss_threshold(np.array([0.0, 1.0]), CORRECTNESS), [0, 1])


def test_fits_without_a_run_refuses_misshapen_input():
    sums = ShadowSums(3)
    with pytest.raises(UsageError, match="no run was added"):
        sums.fits_without(np.ones(3, bool), np.zeros(3))
    sums.add(np.ones(3, bool), np.zeros(3))
    with pytest.raises(UsageError, match="do not fit 3 examples"):
        sums.fits_without(np.ones(4, bool), np.zeros(4))


def test_removing_runs_leaves_the_fits_of_the_others():
    masks, statistic = runs(num_runs=14)
    sums = summed(masks, statistic)
    for removed in (0, 6):  # the first run (whose values are the shift) too
        sums.remove(masks[removed], statistic[removed])
    fits = sums.fits()
    kept = np.isin(np.arange(14), (0, 6), invert=True)
    for j in range(masks.shape[1]):
        inside = statistic[kept & masks[:, j], j].astype(np.float64)
        outside = statistic[kept & ~masks[:, j], j].astype(np.float64)
        assert fits.count_in[j] == inside.size and fits.count_out[j] == outside.size
        assert fits.mean_in[j] == pytest.approx(inside.mean(), abs=1e-12)
        assert fits.std_out[j] == pytest.approx(outside.std(), abs=1e-9)
