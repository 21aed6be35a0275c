"""Bit-packed runs and the popcount kernels against the plain definitions, exactly.

Sizes cross every boundary the code has: 64-run words (63, 64, 65 runs), 4-word groups
(257 runs), 2048-run blocks (2049), 512-example column chunks (N = 1025) and row pairs
(odd N_test).
"""

import numpy as np
import pytest

from heldout.scores.backends.bitplanes import PLANE_GROUP, PlaneProblem, RunBits

popcount = pytest.importorskip("heldout.scores.backends.popcount", reason="numba is not installed")

SIZES = [(63, 37, 11), (64, 1025, 5), (65, 513, 3), (257, 40, 1), (2049, 70, 9)]


def _packed(rows: np.ndarray) -> RunBits:
    bits = RunBits(rows.shape[1], capacity_runs=8)  # small: the planes must grow
    for row in rows:
        bits.append(row)
    return bits


def _problem(num_runs, num_train, num_test, seed=0):
    rng = np.random.default_rng(seed)
    masks = rng.random((num_runs, num_train)) < 0.7
    tests = rng.random((num_runs, num_test)) < 0.6
    return masks, tests


def _float32_influence(masks, tests):
    """The float32 path's arithmetic: exact integer numerator, float32 scale, one product."""
    num_runs = len(masks)
    count_in, correct = masks.sum(0), tests.sum(0)
    numerator = num_runs * (tests.T.astype(np.int64) @ masks) - np.outer(correct, count_in)
    with np.errstate(divide="ignore"):
        scale = 1.0 / (count_in * (num_runs - count_in).astype(np.float64))
    scale[~np.isfinite(scale)] = np.nan
    scale = scale.astype(np.float32)
    return numerator.astype(np.float32) * scale, count_in, correct, scale


@pytest.mark.parametrize("num_runs", [0, 1, 7, 8, 9, 63, 64, 65, 300, 2049])
def test_run_bits_round_trip_and_bit_layout(num_runs):
    rows = np.random.default_rng(num_runs).random((num_runs, 13)) < 0.5
    bits = RunBits(13, capacity_runs=8)
    for i, row in enumerate(rows):
        bits.append(row)
        if i % 5 == 0:
            bits.planes()  # a partial byte plane stored early must not lose later runs
    planes = bits.planes()
    assert planes.dtype == np.uint64 and planes.shape[0] % PLANE_GROUP == 0
    assert planes.flags.c_contiguous
    np.testing.assert_array_equal(bits.unpacked(), rows)
    for r in range(num_runs):  # bit r % 64 of word r // 64
        np.testing.assert_array_equal(
            (planes[r // 64] >> np.uint64(r % 64)) & np.uint64(1), rows[r]
        )
    assert not planes[-(-num_runs // 64) :].any()  # padding planes stay zero


@pytest.mark.parametrize("num_runs, num_train, num_test", SIZES)
def test_counts_are_the_integer_product(num_runs, num_train, num_test):
    masks, tests = _problem(num_runs, num_train, num_test)
    counts = popcount.count_products(_packed(tests).planes(), _packed(masks).planes())
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, tests.T.astype(np.int64) @ masks)


@pytest.mark.parametrize("num_runs, num_train, num_test", SIZES)
def test_dense_influence_is_bit_for_bit_the_float32_arithmetic(num_runs, num_train, num_test):
    masks, tests = _problem(num_runs, num_train, num_test, seed=1)
    masks[:, 3] = True  # never held out: NaN column
    expected, count_in, correct, scale = _float32_influence(masks, tests)
    got = popcount.dense_influence(
        PlaneProblem(
            _packed(tests).planes(), _packed(masks).planes(), correct, count_in, scale, num_runs
        )
    )
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)  # NaN where expected is NaN
    assert np.isnan(got[:, 3]).all()


@pytest.mark.parametrize("num_runs, num_train, num_test", SIZES)
def test_topk_keeps_the_k_best_with_ties_to_the_smaller_index(num_runs, num_train, num_test):
    masks, tests = _problem(num_runs, num_train, num_test, seed=2)
    dense, count_in, correct, scale = _float32_influence(masks, tests)
    k = 6
    values, index = popcount.topk_influence(
        PlaneProblem(
            _packed(tests).planes(), _packed(masks).planes(), correct, count_in, scale, num_runs
        ),
        k,
    )
    filled = np.nan_to_num(dense, nan=-np.inf)
    columns = np.broadcast_to(np.arange(num_train), dense.shape)
    expected = np.lexsort((columns, -filled), axis=1)[:, :k]
    order = np.lexsort((index, -values), axis=1)
    np.testing.assert_array_equal(np.take_along_axis(index, order, 1), expected)
    np.testing.assert_array_equal(
        np.take_along_axis(values, order, 1), np.take_along_axis(filled, expected, 1)
    )


def test_rows_with_fewer_defined_values_than_k_keep_empty_slots():
    masks, tests = _problem(10, 5, 3)
    masks[:, :3] = True  # only columns 3 and 4 are defined
    dense, count_in, correct, scale = _float32_influence(masks, tests)
    values, index = popcount.topk_influence(
        PlaneProblem(
            _packed(tests).planes(), _packed(masks).planes(), correct, count_in, scale, 10
        ),
        4,
    )
    assert (np.sort(index, axis=1)[:, :2] == -1).all()
    assert np.isin(np.sort(index, axis=1)[:, 2:], [3, 4]).all()
    assert (np.isneginf(values) == (index == -1)).all()


def test_word_planes_must_match():
    bits = _packed(np.ones((3, 4), bool)).planes()
    with pytest.raises(ValueError, match="multiple of 4"):
        popcount.count_products(bits[:3], bits[:3])
    with pytest.raises(ValueError, match="uint64"):
        popcount.count_products(bits.astype(np.int64), bits)
