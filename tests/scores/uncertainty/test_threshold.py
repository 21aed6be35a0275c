"""A fixed influence threshold beside FDR control (issue #24, item 5): the survivors are
counted on the same counts as `influence_pairs`, or the runs are too few and it says so."""

import math

import numpy as np
import pytest

from heldout.scores.influence import compute_influence
from heldout.scores.uncertainty.pairs import compute_influence_pairs
from heldout.scores.uncertainty.threshold import check_influence_threshold
from heldout.testing.synthetic import SyntheticExperiment, SyntheticSpec


def _runs(num_runs: int, **sizes):
    spec = SyntheticSpec(subset_ratios=(0.7,), runs_per_ratio=num_runs, **sizes)
    return [aux for _, _, aux in SyntheticExperiment(spec).iter_runs()]


def _row_max(influence):
    return np.fmax.reduce(influence.matrix, axis=1)


def test_thirty_two_runs_are_too_few_for_a_threshold_of_0_15():
    runs = _runs(32, num_train=300, num_test=60)
    influence = compute_influence(runs, subset_ratio=0.7)
    check = check_influence_threshold(influence, _row_max(influence))
    assert check.num_above > 0  # the count the summary printed alone before
    assert check.too_few_runs and check.num_surviving is None
    expected = 0.5 * math.sqrt(1 / check.count_in + 1 / check.count_out)
    assert check.standard_error == pytest.approx(expected)
    assert check.standard_error > 0.15 / 2
    assert 15 <= check.count_in <= 28 and check.count_in + check.count_out == 32


@pytest.fixture(scope="module")
def many_runs():
    return _runs(400, num_train=200, num_test=50)


def test_survivors_are_the_fdr_selected_pairs_above_the_threshold(many_runs):
    influence = compute_influence(many_runs, subset_ratio=0.7)
    pairs = compute_influence_pairs(many_runs, 0.7, fdr=0.05)
    check = check_influence_threshold(influence, _row_max(influence))
    assert not check.too_few_runs
    expected = int(np.unique(pairs.test_index[pairs.influence >= 0.15]).size)
    assert expected >= 5  # the planted pairs
    assert check.num_surviving == expected and check.num_above >= expected
    # From top-k values the matrix cannot be recounted: the pairs of the same runs count.
    topk = compute_influence(many_runs, topk=3, subset_ratio=0.7)
    from_pairs = check_influence_threshold(topk, topk.topk_value[:, 0], pairs=pairs)
    assert (from_pairs.num_above, from_pairs.num_surviving) == (check.num_above, expected)
    assert check_influence_threshold(topk, topk.topk_value[:, 0]).num_surviving is None


def test_a_stricter_rate_never_keeps_more(many_runs):
    influence = compute_influence(many_runs, subset_ratio=0.7)
    loose = check_influence_threshold(influence, _row_max(influence), fdr=0.05)
    strict = check_influence_threshold(influence, _row_max(influence), fdr=1e-6)
    assert strict.num_surviving <= loose.num_surviving
    pairs = compute_influence_pairs(many_runs, 0.7, fdr=1e-6)
    expected = int(np.unique(pairs.test_index[pairs.influence >= 0.15]).size)
    assert strict.num_surviving == expected
