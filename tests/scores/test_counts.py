"""The score engine against straightforward dense implementations, NaN rules and invariances."""

import dataclasses

import numpy as np
import pytest

from heldout.release.aux_arrays import aux_from_predictions
from heldout.scores.backends.numpy_gemm import (
    DenseInfluenceAccumulator,
    TopKInfluenceAccumulator,
)
from heldout.scores.counts import ScoreAccumulator, compute_cscores, compute_memorization
from heldout.scores.influence import compute_influence
from heldout.scores.request import ScoreRequest, default_score_ratio
from heldout.testing.synthetic import SyntheticExperiment, SyntheticSpec


def _runs(masks, train_correct, test_correct, seed=0):
    """AuxArrays from index-order rows, evaluation orders shuffled."""
    rng = np.random.default_rng(seed)
    return [
        aux_from_predictions(m, c, t, rng=rng)
        for m, c, t in zip(masks, train_correct, test_correct, strict=True)
    ]


def _random_runs(num_runs, num_train, num_test, seed=0, ratio=0.5):
    rng = np.random.default_rng(seed)
    masks = rng.random((num_runs, num_train)) < ratio
    train_correct = rng.random((num_runs, num_train)) < 0.6
    test_correct = rng.random((num_runs, num_test)) < 0.7
    return _runs(masks, train_correct, test_correct, seed), masks, train_correct, test_correct


def _dense_reference(masks, test_correct):
    """infl = T^T M / n_in - T^T (1 - M) / n_out in float64, NaN where a count is 0."""
    m, t = masks.astype(np.float64), test_correct.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (t.T @ m) / m.sum(0) - (t.T @ (1 - m)) / (1 - m).sum(0)


def _reshuffled(runs, seed):
    """The same runs in another order, each with other evaluation orders."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(runs))
    return [
        aux_from_predictions(
            runs[i].train_mask(), runs[i].train_correctness(), runs[i].test_correctness(), rng
        )
        for i in order
    ]


# --- C-scores and memorization ------------------------------------------------------------


def test_cscores_and_memorization_by_hand():
    # 3 training examples, 4 runs at ratio 0.5 and 2 at 0.9.
    masks = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=bool)
    correct = np.array(
        [[1, 1, 0], [0, 1, 1], [1, 1, 1], [1, 0, 0], [1, 1, 1], [1, 0, 0]], dtype=bool
    )
    runs = _runs(masks, correct, np.zeros((6, 1), dtype=bool))
    ratios = [0.5, 0.5, 0.5, 0.5, 0.9, 0.9]
    cscores = compute_cscores(zip(ratios, runs, strict=True))
    np.testing.assert_array_equal(cscores.subset_ratios, [0.5, 0.9])
    np.testing.assert_array_equal(cscores.num_runs_by_ratio, [4, 2])
    # At 0.5: example 0 held out in runs 1 and 3 (correct 0, 1); example 1 in runs 0, 3
    # (1, 0); example 2 in all four (0, 1, 1, 0). At 0.9 examples 0 and 1 never held out.
    np.testing.assert_array_equal(cscores.heldout_count_by_ratio, [[2, 2, 4], [0, 0, 2]])
    np.testing.assert_array_equal(cscores.cscore_by_ratio, [[0.5, 0.5, 0.5], [np.nan, np.nan, 0.5]])
    np.testing.assert_allclose(
        cscores.cscore_stderr_by_ratio,
        [[0.5 / np.sqrt(2), 0.5 / np.sqrt(2), 0.25], [np.nan, np.nan, np.sqrt(0.25 / 2)]],
    )
    # Integral: mean over the ratios where it is defined; count of them alongside.
    np.testing.assert_array_equal(cscores.cscore, [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(cscores.ratio_count, [1, 1, 2])

    memorization = compute_memorization(runs[:4], 0.5)
    np.testing.assert_array_equal(memorization.count_in, [2, 2, 0])
    np.testing.assert_array_equal(memorization.count_out, [2, 2, 4])
    # Example 0 trained in runs 0, 2 (correct 1, 1): 1 - 0.5; example 1 in 1, 2 (1, 1).
    np.testing.assert_array_equal(memorization.memorization, [0.5, 0.5, np.nan])
    np.testing.assert_array_equal(memorization.p_correct_in, [1.0, 1.0, np.nan])
    assert memorization.subset_ratio == 0.5 and memorization.num_runs == 4
    assert np.isnan(memorization.stderr[2])


def test_an_example_never_held_out_has_nan_cscore_never_zero():
    masks = np.array([[1, 0], [1, 1]], dtype=bool)
    runs = _runs(masks, np.ones((2, 2), dtype=bool), np.ones((2, 1), dtype=bool))
    cscores = compute_cscores([(0.5, runs[0]), (0.9, runs[1])])
    assert np.isnan(cscores.cscore[0]) and cscores.ratio_count[0] == 0
    assert cscores.cscore[1] == 1.0
    assert np.isnan(cscores.cscore_stderr_by_ratio[:, 0]).all()


def test_declared_ratio_without_runs_is_a_nan_row():
    runs, *_ = _random_runs(3, 5, 2)
    accumulator = ScoreAccumulator(subset_ratios=[0.5, 0.9])
    for aux in runs:
        accumulator.add(0.5, aux)
    cscores = accumulator.cscores()
    np.testing.assert_array_equal(cscores.num_runs_by_ratio, [3, 0])
    assert np.isnan(cscores.cscore_by_ratio[1]).all()
    assert (cscores.heldout_count_by_ratio[1] == 0).all()
    assert np.isnan(accumulator.memorization(0.9).memorization).all()
    with pytest.raises(ValueError, match="ratios present"):
        accumulator.memorization(0.7)


def test_cscores_match_masked_means():
    runs, masks, correct, _ = _random_runs(30, 50, 3)
    cscores = compute_cscores((0.5, aux) for aux in runs)
    heldout = ~masks
    expected = (correct & heldout).sum(0) / heldout.sum(0)
    np.testing.assert_allclose(cscores.cscore_by_ratio[0], expected)
    memorization = compute_memorization(runs)
    expected_in = (correct & masks).sum(0) / masks.sum(0)
    np.testing.assert_allclose(memorization.memorization, expected_in - expected)
    assert memorization.subset_ratio is None


def test_scores_do_not_depend_on_run_order_or_evaluation_order():
    runs, *_ = _random_runs(25, 40, 12, seed=3)
    other = _reshuffled(runs, seed=4)
    for a, b in [
        (compute_cscores((0.5, r) for r in runs), compute_cscores((0.5, r) for r in other)),
        (compute_memorization(runs), compute_memorization(other)),
        (compute_influence(runs), compute_influence(other)),
        (compute_influence(runs, topk=3), compute_influence(other, topk=3)),
    ]:
        for field in dataclasses.fields(a):
            x, y = getattr(a, field.name), getattr(b, field.name)
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y, err_msg=field.name)


def test_runs_with_different_sizes_are_refused():
    runs, *_ = _random_runs(2, 5, 2)
    bigger, *_ = _random_runs(1, 6, 2)
    accumulator = ScoreAccumulator()
    accumulator.add(0.5, runs[0])
    with pytest.raises(ValueError, match="N=6"):
        accumulator.add(0.5, bigger[0])
    wider_test, *_ = _random_runs(1, 5, 3)
    for influence in (DenseInfluenceAccumulator(), TopKInfluenceAccumulator(2)):
        influence.add(runs[0])
        with pytest.raises(ValueError, match="N_test=3"):
            influence.add(wider_test[0])


def test_run_counts_alone_skip_the_sums_but_still_check_sizes_and_kinds():
    runs, *_ = _random_runs(3, 5, 2)
    counting = ScoreAccumulator((0.5,), per_example=False)
    for aux in runs:
        counting.add(0.5, aux)
    full = ScoreAccumulator((0.5,))
    for aux in runs:
        full.add(0.5, aux)
    np.testing.assert_array_equal(
        counting.cscores().num_runs_by_ratio, full.cscores().num_runs_by_ratio
    )
    assert counting.cscores().heldout_count_by_ratio.sum() == 0  # no per-example sums
    bigger, *_ = _random_runs(1, 6, 2)
    with pytest.raises(ValueError, match="N=6"):
        counting.add(0.5, bigger[0])
    with pytest.raises(ValueError, match="per-example sums"):
        full.merge(counting)


def test_influence_alone_equals_influence_beside_the_counts(tmp_path):
    from heldout.scores import experiment as scores
    from heldout.testing import synthetic

    spec = synthetic.SyntheticSpec(
        num_train=50, num_test=8, subset_ratios=(0.5, 0.7), runs_per_ratio=6, seed=4
    )
    experiment = synthetic.write_synthetic_experiment(tmp_path / "e", spec)
    alone = scores.score_experiment(experiment, ScoreRequest(scores=["influence"])).arrays()
    beside = scores.score_experiment(
        experiment, ScoreRequest(scores=["cscore", "influence"])
    ).arrays()
    assert "cscore" not in alone
    # Influence alone reads only the score ratio's runs, and counts them.
    assert alone["subset_ratios"].tolist() == [0.7]
    assert alone["num_runs_by_ratio"].tolist() == [beside["num_runs_by_ratio"][1]] == [6]
    influence_keys = [key for key in alone if key.startswith("influence")]
    assert "influence" in influence_keys
    for key in influence_keys:
        np.testing.assert_array_equal(alone[key], beside[key], err_msg=key)


def test_nothing_added_is_an_error_not_zeros():
    with pytest.raises(ValueError, match="no runs"):
        ScoreAccumulator().cscores()
    with pytest.raises(ValueError, match="no runs"):
        compute_influence([])
    with pytest.raises(ValueError, match="no runs"):
        compute_influence([], topk=2)


def test_default_score_ratio():
    assert default_score_ratio([0.1, 0.7, 0.9]) == 0.7
    assert default_score_ratio([0.1, 0.7000000001, 0.9]) == 0.7000000001
    assert default_score_ratio([0.1, 0.5]) == 0.5
    with pytest.raises(ValueError):
        default_score_ratio([])


# --- influence ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},  # one block, one tile
        {"block_bytes": 7 * (5 + 3), "tile_test": 8, "tile_train": 16},  # 7-run blocks
        {"block_bytes": 1, "tile_test": 8, "tile_train": 8},  # one run at a time
    ],
)
def test_streaming_dense_influence_equals_the_dense_formula(options):
    runs, masks, _, test_correct = _random_runs(40, 37, 23, seed=1)
    influence = compute_influence(runs, subset_ratio=0.5, **options)
    assert influence.matrix.dtype == np.float32 and influence.matrix.shape == (23, 37)
    np.testing.assert_allclose(
        influence.matrix, _dense_reference(masks, test_correct), rtol=0, atol=1e-6
    )
    np.testing.assert_array_equal(influence.count_in, masks.sum(0))
    np.testing.assert_array_equal(influence.count_out, 40 - masks.sum(0))
    assert influence.num_runs == 40 and influence.subset_ratio == 0.5 and not influence.is_topk


def test_influence_is_nan_where_an_example_is_always_in_or_always_out():
    runs, masks, _, test_correct = _random_runs(10, 8, 4, seed=2)
    masks[:, 2] = True  # never held out
    masks[:, 5] = False  # never trained on
    runs = _runs(masks, np.ones_like(masks), test_correct)
    dense = compute_influence(runs).matrix
    assert np.isnan(dense[:, [2, 5]]).all()
    assert not np.isnan(np.delete(dense, [2, 5], axis=1)).any()
    top = compute_influence(runs, topk=8)  # more than the 6 defined columns
    assert (top.topk_index[:, 6:] == -1).all() and np.isnan(top.topk_value[:, 6:]).all()
    assert not np.isin(top.topk_index, [2, 5]).any()
    expected = -np.sort(-np.delete(dense, [2, 5], axis=1), axis=1)
    np.testing.assert_array_equal(top.topk_value[:, :6], expected)


def _check_topk_against_dense(top, dense, k):
    rows = np.arange(dense.shape[0])[:, None]
    expected_values = -np.sort(-np.nan_to_num(dense, nan=-np.inf), axis=1)[:, :k]
    np.testing.assert_allclose(top.topk_value, expected_values, rtol=0, atol=1e-6)
    # Ties may pick any of the tied columns: the indices must be valid and distinct, and
    # point at the values reported.
    assert ((top.topk_index >= 0) & (top.topk_index < dense.shape[1])).all()
    assert all(len(set(row)) == k for row in top.topk_index.tolist())
    np.testing.assert_allclose(dense[rows, top.topk_index], top.topk_value, rtol=0, atol=1e-6)
    assert (np.diff(top.topk_value, axis=1) <= 0).all()  # most influential first


@pytest.mark.parametrize(
    "num_runs, k, tile_test, tile_train",
    [
        (60, 5, 2048, 8192),  # one tile
        (60, 5, 8, 16),  # many tiles: the sparse merge after the first tiles
        (6, 4, 8, 8),  # few runs: many exact ties
        (60, 20, 8, 8),  # k wider than a tile
    ],
)
def test_topk_influence_equals_the_dense_topk(num_runs, k, tile_test, tile_train):
    runs, masks, _, test_correct = _random_runs(num_runs, 101, 29, seed=num_runs + k)
    dense = compute_influence(runs).matrix
    np.testing.assert_allclose(dense, _dense_reference(masks, test_correct), atol=1e-6)
    top = compute_influence(runs, topk=k, tile_test=tile_test, tile_train=tile_train)
    assert top.is_topk and top.matrix is None
    assert top.topk_index.shape == (29, k) and top.topk_index.dtype == np.int64
    assert top.topk_value.dtype == np.float32
    _check_topk_against_dense(top, dense, k)


def test_topk_finds_the_planted_pairs():
    spec = SyntheticSpec(num_train=300, num_test=40, subset_ratios=(0.7,), runs_per_ratio=200)
    experiment = SyntheticExperiment(spec)
    runs = [aux for _, _, aux in experiment.iter_runs()]
    top = compute_influence(runs, topk=3, tile_test=16, tile_train=64)
    planted = experiment.planted
    np.testing.assert_array_equal(top.topk_index[planted.pair_test, 0], planted.pair_train)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"topk": -1}, "topk"),
        ({"topk": 2, "tile_train": 12}, "multiples of 8"),
        ({"topk": 0, "tile_test": 0}, "multiples of 8"),
    ],
)
def test_bad_influence_options(kwargs, message):
    runs, *_ = _random_runs(2, 5, 2)
    with pytest.raises(ValueError, match=message):
        compute_influence(runs, **kwargs)


def test_dense_influence_refuses_a_matrix_larger_than_allowed():
    runs, *_ = _random_runs(2, 50, 20)
    with pytest.raises(MemoryError, match="influence_topk"):
        compute_influence(runs, max_matrix_bytes=1000)


@pytest.mark.parametrize("make", [DenseInfluenceAccumulator, lambda: TopKInfluenceAccumulator(2)])
def test_influence_result_can_be_taken_once(make):
    runs, *_ = _random_runs(3, 5, 2)
    accumulator = make()
    for aux in runs:
        accumulator.add(aux)
    accumulator.result()
    with pytest.raises(ValueError, match="already"):
        accumulator.result()
    with pytest.raises(ValueError, match="already"):
        accumulator.add(runs[0])
