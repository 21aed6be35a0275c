"""Order mapping: matching by image bytes, duplicates, label checks, published score files."""

from pathlib import Path

import numpy as np
import pytest

from heldout.datasets import DatasetError
from heldout.datasets.order import (
    OrderMapping,
    load_published_scores,
    match_orders,
    permute_scores,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _dataset(n=50, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 6, 6, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    return images, labels


def test_recovers_a_permutation():
    images, labels = _dataset()
    perm = np.random.default_rng(1).permutation(len(images))  # order B = A[perm]
    mapping = match_orders(images, images[perm], labels, labels[perm], "orig", "tfds")
    np.testing.assert_array_equal(mapping.b_to_a, perm)
    np.testing.assert_array_equal(mapping.a_to_b[perm], np.arange(len(images)))
    assert mapping.ambiguous_groups == ()
    np.testing.assert_array_equal(mapping.inverse().a_to_b, mapping.b_to_a)
    scores = np.random.default_rng(2).random(len(images))
    np.testing.assert_array_equal(permute_scores(scores, mapping), scores[perm])
    # Extra axes travel with the example axis.
    np.testing.assert_array_equal(
        permute_scores(np.stack([scores, -scores], 1), mapping)[:, 1], -scores[perm]
    )


def test_duplicates_match_in_stable_order_and_are_reported():
    images, labels = _dataset(12)
    images[[2, 7, 9]] = images[2]  # three identical images, same label
    labels[[2, 7, 9]] = 4
    images[5] = images[3]  # identical image, different label: told apart by label
    labels[3], labels[5] = 1, 2
    perm = np.array([9, 0, 5, 1, 7, 3, 2, 4, 6, 8, 10, 11])
    mapping = match_orders(images, images[perm], labels, labels[perm])
    np.testing.assert_array_equal(images[mapping.b_to_a], images[perm])
    np.testing.assert_array_equal(labels[mapping.b_to_a], labels[perm])
    assert mapping.b_to_a[5] == 3 and mapping.b_to_a[2] == 5  # resolved by label
    (group,) = mapping.ambiguous_groups
    assert group.label == 4
    np.testing.assert_array_equal(group.positions_a, [2, 7, 9])
    np.testing.assert_array_equal(group.positions_b, [0, 4, 6])  # where perm has 9, 7, 2
    np.testing.assert_array_equal(mapping.a_to_b[[2, 7, 9]], [0, 4, 6])  # k-th ↔ k-th
    assert mapping.num_ambiguous == 3
    # Without labels the same-image/different-label pair becomes ambiguous too.
    unlabeled = match_orders(images, images[perm])
    assert sorted(len(g.positions_a) for g in unlabeled.ambiguous_groups) == [2, 3]


def test_label_disagreement_is_an_error():
    images, labels = _dataset()
    wrong = labels.copy()
    wrong[7] = (wrong[7] + 1) % 10
    with pytest.raises(DatasetError, match=r"labels disagree .* positions \[7\]"):
        match_orders(images, images, labels, wrong, "idx", "tfds")


def test_missing_images_are_an_error():
    images, labels = _dataset()
    other = images.copy()
    other[3, 0, 0, 0] ^= 1
    with pytest.raises(DatasetError, match=r"1 image\(s\) of idx have no .* \(positions \[3\]"):
        match_orders(images, other, labels, labels, "idx", "tfds")
    with pytest.raises(DatasetError, match="uint8"):
        match_orders(images, images[:-1])
    with pytest.raises(DatasetError, match="both orders or for neither"):
        match_orders(images, images, labels, None)


def test_permute_scores_checks_length_and_labels():
    images, labels = _dataset()
    perm = np.random.default_rng(3).permutation(len(images))
    mapping = OrderMapping.from_positions_in_a(perm)
    with pytest.raises(DatasetError, match="49 entries"):
        permute_scores(np.zeros(49), mapping)
    with pytest.raises(DatasetError, match="label\\(s\\) disagree"):
        permute_scores(np.zeros(50), mapping, labels, labels)  # labels_b not permuted
    with pytest.raises(DatasetError, match="not a permutation"):
        OrderMapping(np.array([0, 0, 1]))


@pytest.mark.skipif(
    not (SHARED_DATA / "cifar10-cscores-orig-order.npz").is_file(),
    reason="published score files not available",
)
@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_published_cifar_cscores_to_a_release_order(name, classes):
    published = load_published_scores(SHARED_DATA / f"{name}-cscores-orig-order.npz")
    assert published.scores.shape == (50000,) and published.labels.shape == (50000,)
    assert published.scores.dtype == np.float64 and published.labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(published.labels), [50000 // classes] * classes)
    # No CIFAR data offline: a synthetic TFDS order (TFDS position → original position),
    # as `TfdsSource.original_positions` would return it.
    original_positions = np.random.default_rng(0).permutation(50000)
    mapping = OrderMapping.from_positions_in_a(original_positions, "original", "tfds")
    tfds_labels = published.labels[original_positions]
    scores = permute_scores(published.scores, mapping, published.labels, tfds_labels)
    np.testing.assert_array_equal(scores, published.scores[original_positions])
    # A wrong mapping is caught by the labels that come with the scores.
    with pytest.raises(DatasetError, match="disagree"):
        permute_scores(published.scores, mapping.inverse(), published.labels, tfds_labels)


def test_published_mnist_scores_and_pickle_refusal(tmp_path):
    mnist = SHARED_DATA / "mnist-cscores.npy"
    if mnist.is_file():
        published = load_published_scores(mnist)
        assert published.scores.shape == (60000,) and published.labels is None
    pickled = tmp_path / "with-filenames.npz"
    np.savez(
        pickled,
        scores=np.zeros(2),
        labels=np.zeros(2, np.int64),
        filenames=np.array(["a", None], dtype=object),
    )
    assert load_published_scores(pickled).scores.shape == (2,)  # object key never read
    bad = tmp_path / "object-scores.npz"
    np.savez(bad, scores=np.array([1.0, None], dtype=object))
    with pytest.raises(DatasetError, match="pickle"):
        load_published_scores(bad)
