"""Class-wise influence blocks: the dense matrix's same-class entries, class by class."""

import numpy as np
import pytest

from heldout.errors import InconsistentRunError, ScoresError
from heldout.release.aux_arrays import aux_from_predictions
from heldout.scores.classwise import ClassBlock, compute_classwise_influence
from heldout.scores.counts import compute_memorization
from heldout.scores.influence import compute_influence

TRAIN_LABELS = np.array([2, 0, 1, 0, 2, 2, 1, 0, 1, 2, 0, 1, 2, 0, 0, 1, 2])
TEST_LABELS = np.array([1, 0, 2, 2, 0, 1, 0])


def _runs(num_runs=16, seed=0):
    rng = np.random.default_rng(seed)
    return [
        aux_from_predictions(
            rng.random(TRAIN_LABELS.size) < 0.6,
            rng.random(TRAIN_LABELS.size) < 0.7,
            rng.random(TEST_LABELS.size) < 0.5,
            rng=rng,
        )
        for _ in range(num_runs)
    ]


def test_each_block_is_the_transposed_same_class_part_of_the_dense_matrix():
    runs = _runs()
    dense = compute_influence(runs, backend="numpy").matrix  # [N_test, N]
    accumulator = compute_classwise_influence(runs, TRAIN_LABELS, TEST_LABELS)
    assert accumulator.classes == [0, 1, 2]
    for block in accumulator.blocks():
        assert isinstance(block, ClassBlock)
        np.testing.assert_array_equal(
            block.train_index, np.flatnonzero(TRAIN_LABELS == block.label)
        )
        np.testing.assert_array_equal(block.test_index, np.flatnonzero(TEST_LABELS == block.label))
        want = dense[np.ix_(block.test_index, block.train_index)].T
        assert block.matrix.dtype == np.float32
        np.testing.assert_allclose(block.matrix, want, rtol=1e-6, atol=1e-7, equal_nan=True)


def test_memorization_equals_the_engine_memorization():
    runs = _runs()
    accumulator = compute_classwise_influence(runs, TRAIN_LABELS, TEST_LABELS)
    want = compute_memorization(runs).memorization
    np.testing.assert_allclose(accumulator.memorization(), want, equal_nan=True)


def test_known_answer_on_two_runs():
    # Train example 0 (class 0) in run 0 only; test example 0 (class 0) right in run 0 only:
    # influence = P(right | in) - P(right | out) = 1 - 0.
    runs = [
        aux_from_predictions(np.array([1, 0], bool), np.ones(2, bool), np.array([1], bool)),
        aux_from_predictions(np.array([0, 1], bool), np.ones(2, bool), np.array([0], bool)),
    ]
    accumulator = compute_classwise_influence(runs, [0, 1], [0])
    np.testing.assert_array_equal(accumulator.block(0).matrix, [[1.0]])
    assert accumulator.block(1).matrix.shape == (1, 0)  # a class without test examples


def test_refusals():
    with pytest.raises(ScoresError, match="non-empty 1-D integer"):
        compute_classwise_influence([], np.array([0.5]), TEST_LABELS)
    with pytest.raises(ScoresError, match="negative"):
        compute_classwise_influence([], np.array([-1, 0]), TEST_LABELS)
    with pytest.raises(InconsistentRunError, match="the labels have"):
        compute_classwise_influence(_runs(1), TRAIN_LABELS[:-1], TEST_LABELS)
    empty = compute_classwise_influence([], TRAIN_LABELS, TEST_LABELS)
    with pytest.raises(ScoresError, match="no runs"):
        empty.block(0)
    with pytest.raises(ScoresError, match="no training example has label 7"):
        compute_classwise_influence(_runs(2), TRAIN_LABELS, TEST_LABELS).block(7)
