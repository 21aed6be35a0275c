"""Order mapping: matching by image bytes, duplicates, label checks, published score files."""

from pathlib import Path

import numpy as np
import pytest
from tool_runs import run_script

from heldout.datasets import DatasetError
from heldout.datasets.order import (
    OrderMapping,
    match_orders,
    permute_scores,
)
from heldout.published import load_cscores

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


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
    not all(
        (SHARED_DATA / f"{n}-cscores-orig-order.npz").is_file() for n in ("cifar10", "cifar100")
    ),
    reason="the published CIFAR C-score files are not in ../shared/data",
)
@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_published_cifar_cscores_to_a_release_order(name, classes):
    published = load_cscores(SHARED_DATA / f"{name}-cscores-orig-order.npz")
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


@pytest.mark.skipif(
    not (SHARED_DATA / "mnist-cscores.npy").is_file(),
    reason="the published MNIST C-scores (mnist-cscores.npy) are not in ../shared/data",
)
def test_published_mnist_scores():
    published = load_cscores(SHARED_DATA / "mnist-cscores.npy")
    assert published.scores.shape == (60000,) and published.labels is None
    assert published.scores.dtype == np.float64
    assert 0.0 <= published.scores.min() and published.scores.max() <= 1.0


def test_pickled_score_files_are_refused(tmp_path):
    """Object arrays are never unpickled, not even beside readable `scores`."""
    for name, arrays in (
        ("object-scores.npz", {"scores": np.array([1.0, None], dtype=object)}),
        (
            "with-filenames.npz",
            {"scores": np.zeros(2), "filenames": np.array(["a", None], dtype=object)},
        ),
    ):
        path = tmp_path / name
        np.savez(path, **arrays)
        with pytest.raises(DatasetError, match=f"{name}: .* object array.*allow_pickle=True"):
            load_cscores(path)


def test_broken_score_files_name_the_file(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, scores=np.linspace(0, 1, 50), labels=np.zeros(50, np.int64))
    truncated, empty = tmp_path / "truncated.npz", tmp_path / "empty.npz"
    truncated.write_bytes(good.read_bytes()[:300])
    empty.write_bytes(b"")
    with pytest.raises(DatasetError, match="truncated.npz: cannot read"):
        load_cscores(truncated)
    with pytest.raises(DatasetError, match="empty.npz: .*empty"):
        load_cscores(empty)
    words = tmp_path / "words.npz"
    np.savez(words, scores=np.array(["high", "low"]))
    with pytest.raises(
        DatasetError, match="words.npz: scores must be a 1-D array of numbers, got <U4"
    ):
        load_cscores(words)
    floats = tmp_path / "float-labels.npz"
    np.savez(floats, scores=np.zeros(2), labels=np.array([0.5, 1.0]))
    with pytest.raises(DatasetError, match="float-labels.npz: labels must be a 1-D integer array"):
        load_cscores(floats)


def test_positions_and_labels_must_be_integers():
    """Floats were truncated (2.7 -> 2) and strings raised a bare ValueError."""
    with pytest.raises(DatasetError, match="1-D integer array, got float64"):
        OrderMapping.from_positions_in_a(np.array([0.2, 1.7, 2.1]))
    images, labels = _dataset(5)
    with pytest.raises(DatasetError, match="b labels must be a 1-D integer array"):
        match_orders(images, images, labels, labels + 0.5)
    with pytest.raises(DatasetError, match="a labels must be a 1-D integer array, got <U1"):
        match_orders(images, images, np.array(list("abcde")), labels)


def test_permute_scores_checks_the_labels_lengths():
    mapping = OrderMapping.from_positions_in_a(np.array([2, 0, 1]))
    labels = np.array([0, 1, 2])
    for labels_a, labels_b in ((labels[:2], labels), (labels, np.r_[labels, 3])):
        with pytest.raises(DatasetError, match="the mapping has 3"):
            permute_scores(np.zeros(3), mapping, labels_a, labels_b)


def _map_order(*args):
    return run_script("tools/map_order.py", *args)


def test_map_order_cli_reports_truncated_and_empty_files_in_one_line(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, scores=np.linspace(0, 1, 50))
    truncated, empty = tmp_path / "truncated.npz", tmp_path / "empty.npz"
    truncated.write_bytes(good.read_bytes()[:300])
    empty.write_bytes(b"")
    for bad in (truncated, empty):
        result = _map_order(
            f"--scores_file={bad}", "--dataset=cifar10", f"--output={tmp_path / 'o'}"
        )
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"map_order: error: {bad}:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.npz", "good.npz", "truncated.npz"]
