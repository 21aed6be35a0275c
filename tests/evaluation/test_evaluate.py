"""Evaluation: correctness by index, agreement with an eager loop, cross-checking."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from heldout import datasets, models
from heldout.datasets.base import ArraySplit
from heldout.datasets.numpy_source import NpzSource, save_npz
from heldout.errors import DatasetError, UsageError
from heldout.evaluation import evaluate as evaluation
from heldout.release.aux_arrays import aux_from_predictions


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    splits = {
        split: ArraySplit(
            images=rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8),
            labels=rng.integers(0, 3, size=n).astype(np.int64),
        )
        for split, n in (("train", 23), ("test", 11))
    }
    save_npz(path, splits, num_classes=3)
    return NpzSource(path)


@pytest.fixture(scope="module")
def model():
    m = models.build_model("small_inception", 3)
    # Move the BatchNorm statistics away from their initial values so classes differ.
    m(tf.random.stateless_uniform((16, 8, 8, 3), seed=(1, 2)), is_training=True)
    return m


def eager_predictions(model, images_uint8):
    logits = model(tf.constant(images_uint8, tf.float32) / 255.0, is_training=False)
    return np.argmax(logits.numpy(), axis=-1)


@pytest.mark.parametrize("batch_size", [5, 23, 100])
def test_evaluate_matches_eager_predictions(model, tiny_source, batch_size):
    result = evaluation.evaluate(model, tiny_source, "train", batch_size=batch_size)
    arrays = tiny_source.load_arrays("train")
    np.testing.assert_array_equal(result.index, np.arange(23))
    np.testing.assert_array_equal(result.labels, arrays.labels)
    np.testing.assert_array_equal(result.predictions, eager_predictions(model, arrays.images))
    np.testing.assert_array_equal(result.correctness, result.predictions == arrays.labels)
    assert result.correctness.dtype == bool and result.index.dtype == np.int64
    assert result.accuracy == pytest.approx(result.correctness.mean())


def test_evaluate_accepts_a_dataset_in_any_order(model, tiny_source):
    arrays = tiny_source.load_arrays("test")
    order = np.random.default_rng(3).permutation(11)
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "image": arrays.images[order].astype(np.float32) / 255.0,
            "label": arrays.labels[order],
            "index": order.astype(np.int64),
        }
    ).batch(4)
    result = evaluation.evaluate(model, ds, "test")
    np.testing.assert_array_equal(result.index, order)
    np.testing.assert_array_equal(
        result.predictions, eager_predictions(model, arrays.images)[order]
    )


def test_evaluate_rejects_batches_without_index(model):
    ds = tf.data.Dataset.from_tensor_slices(
        {"image": np.zeros((2, 8, 8, 3), np.float32), "label": np.zeros(2, np.int64)}
    ).batch(2)
    with pytest.raises(DatasetError, match=r"lack \['index'\]"):
        evaluation.evaluate(model, ds)


def _results(correct_train, correct_test, train_order=None):
    n = correct_train.size
    order = np.arange(n) if train_order is None else train_order
    return [
        evaluation.EvalResult("train", correct_train[order], order.astype(np.int64)),
        evaluation.EvalResult("test", correct_test, np.arange(correct_test.size, dtype=np.int64)),
    ]


def test_cross_check_all_match_with_shuffled_release_orders():
    rng = np.random.default_rng(5)
    mask = rng.random(40) < 0.7
    correct_train, correct_test = rng.random(40) < 0.8, rng.random(15) < 0.6
    aux = aux_from_predictions(mask, correct_train, correct_test, rng=rng)
    checks = evaluation.cross_check(
        aux, _results(correct_train, correct_test, train_order=rng.permutation(40))
    )
    assert set(checks) == {"train", "removed", "test"}
    assert (checks["train"].matches, checks["train"].total) == (mask.sum(), mask.sum())
    assert checks["removed"].total == (~mask).sum()
    assert checks["test"].total == 15
    assert all(c.all_match and c.mismatched_indices.size == 0 for c in checks.values())
    assert checks["train"].accuracy == pytest.approx(correct_train[mask].mean())


def test_cross_check_reports_mismatching_indices():
    rng = np.random.default_rng(6)
    mask = np.arange(20) % 2 == 0
    correct_train, correct_test = rng.random(20) < 0.5, rng.random(8) < 0.5
    aux = aux_from_predictions(mask, correct_train, correct_test, rng=rng)
    flipped_train = correct_train.copy()
    flipped_train[[3, 4, 10]] ^= True  # 3: removed, 4 and 10: trained on
    flipped_test = correct_test.copy()
    flipped_test[7] ^= True
    checks = evaluation.cross_check(aux, _results(flipped_train, flipped_test))
    np.testing.assert_array_equal(checks["train"].mismatched_indices, [4, 10])
    np.testing.assert_array_equal(checks["removed"].mismatched_indices, [3])
    np.testing.assert_array_equal(checks["test"].mismatched_indices, [7])
    assert (checks["train"].matches, checks["train"].total) == (8, 10)
    assert not checks["test"].all_match


def test_cross_check_partial_evaluation_and_wrong_dataset():
    rng = np.random.default_rng(7)
    aux = aux_from_predictions(rng.random(10) < 0.5, rng.random(10) < 0.5, rng.random(4) < 0.5)
    partial = evaluation.EvalResult("test", aux.test_correctness()[:3], np.arange(3))
    check = evaluation.cross_check(aux, partial)["test"]
    assert (check.matches, check.total, check.not_evaluated) == (3, 3, 1)
    assert not check.all_match
    too_big = evaluation.EvalResult("test", np.ones(6, bool), np.arange(6))
    with pytest.raises(DatasetError, match="cover 4 test examples"):
        evaluation.cross_check(aux, too_big)
    with pytest.raises(UsageError, match="cannot cross-check split 'valid'"):
        evaluation.cross_check(aux, evaluation.EvalResult("valid", np.ones(1, bool), np.arange(1)))


def test_source_name_for_release_metadata():
    assert datasets.source_name_for("cifar10:3.0.2", "tfds") == "cifar10:3.0.2"
    assert datasets.source_name_for("imagenet2012", "tfrecord_index") == "imagenet"
    assert datasets.source_name_for("fashion_mnist", "idx") == "fashion_mnist_idx"
    assert datasets.source_name_for(None, None) is None


def test_model_cache_builds_pipelines_once_per_source(tiny_source, tmp_path):
    cache = evaluation.ModelCache()
    first = cache.dataset(tiny_source, "test", 4)
    assert cache.dataset(tiny_source, "test", 4) is first  # iterated again, not rebuilt
    assert cache.dataset(tiny_source, "test", 5) is not first
    other = NpzSource(tiny_source.path)
    assert cache.dataset(other, "test", 4) is not first  # another source: its own
    batches = list(cache.dataset(other, "test", 4))
    assert [int(b["index"].shape[0]) for b in batches] == [4, 4, 3]
    again = [b["index"].numpy() for b in cache.dataset(other, "test", 4)]
    np.testing.assert_array_equal(np.concatenate(again), np.arange(11))
