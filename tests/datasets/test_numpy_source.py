"""The `.npz` source: key layouts, validation, pickle refusal."""

import numpy as np
import pytest
from tiny_release import random_split

from heldout.datasets import DatasetError, get_source
from heldout.datasets.numpy_source import save_npz
from heldout.errors import UsageError


def _split(n, seed=0):
    return random_split(n, (4, 4, 3), 5, np.random.default_rng(seed))


def test_per_split_layout_roundtrip(tmp_path):
    path = tmp_path / "data.npz"
    train, test = _split(10), _split(4, seed=1)
    save_npz(path, {"train": train, "test": test}, num_classes=5)
    source = get_source("npz", path)
    assert source.splits == ("test", "train")
    assert source.num_classes == 5 and source.image_shape == (4, 4, 3)
    np.testing.assert_array_equal(source.load_arrays("test").images, test.images)
    batches = list(source.as_dataset("train", 4).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]), np.arange(10))
    np.testing.assert_allclose(
        np.concatenate([b["image"] for b in batches]), train.images / 255.0, rtol=1e-6
    )


def test_unprefixed_keys_are_train_and_grayscale_gets_a_channel(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, images=np.zeros((3, 5, 5), np.uint8), labels=np.array([0, 2, 1]))
    source = get_source("npz", path)
    assert source.splits == ("train",) and source.num_classes == 3
    assert source.load_arrays("train").images.shape == (3, 5, 5, 1)
    with pytest.raises(DatasetError, match="unknown split 'test'"):
        source.load_arrays("test")


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            {
                "images": np.zeros((2, 3, 3), np.uint8),
                "labels": np.zeros(2, np.int64),
                "train_images": np.zeros((2, 3, 3), np.uint8),
            },
            "both",
        ),
        ({"test_images": np.zeros((2, 3, 3), np.uint8)}, "lacks the key `test_labels`"),
        ({"x": np.zeros(3)}, "no images found"),
        ({"images": np.zeros((2, 3, 3), np.float32), "labels": np.zeros(2)}, "uint8"),
        (
            {"images": np.zeros((2, 3, 3), np.uint8), "labels": np.zeros(3, np.int64)},
            "2 images but 3 labels",
        ),
    ],
)
def test_bad_layouts(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=message):
        get_source("npz", path)


def test_refuses_pickled_arrays_and_non_npz(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, images=np.zeros((1, 2, 2), np.uint8), labels=np.array([None], dtype=object))
    with pytest.raises(DatasetError, match="pickle"):
        get_source("npz", path)
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(DatasetError, match="single .npy"):
        get_source("npz", npy)
    with pytest.raises(DatasetError, match="missing.npz: file not found"):
        get_source("npz", tmp_path / "missing.npz")


def test_truncated_and_empty_files_name_the_file(tmp_path):
    path = tmp_path / "data.npz"
    save_npz(path, {"train": _split(10)})
    truncated, empty = tmp_path / "truncated.npz", tmp_path / "empty.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    empty.write_bytes(b"")
    with pytest.raises(DatasetError, match="truncated.npz: cannot read"):
        get_source("npz", truncated)
    with pytest.raises(DatasetError, match="empty.npz: .*empty"):
        get_source("npz", empty)


@pytest.mark.parametrize(
    "num_classes", [np.float64(5.7), np.array([5, 6]), np.int64(0), np.array("five")]
)
def test_num_classes_must_be_a_positive_integer(tmp_path, num_classes):
    """A float was truncated (5.7 -> 5); an array or a string raised TypeError/ValueError."""
    path = tmp_path / "data.npz"
    split = _split(4)
    np.savez(path, images=split.images, labels=split.labels, num_classes=num_classes)
    with pytest.raises(DatasetError, match="`num_classes` must be a positive integer"):
        get_source("npz", path)


def test_save_npz_writes_exactly_the_path_given(tmp_path):
    path = tmp_path / "data.arrays"  # numpy's own savez would append `.npz`
    save_npz(path, {"train": _split(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["data.arrays"]  # no temporary left
    np.testing.assert_array_equal(
        get_source("npz", path).load_arrays("train").labels, _split(3).labels
    )


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, None, "8"])
def test_bad_batch_size_is_a_usage_error(tmp_path, batch_size):
    """It was a bare ValueError (or TypeError), which CLIs report as a bug."""
    path = tmp_path / "data.npz"
    save_npz(path, {"train": _split(3)})
    with pytest.raises(UsageError, match="batch_size must be a positive integer"):
        get_source("npz", path).as_dataset("train", batch_size)


def test_a_thread_budget_reaches_the_datasets_pool_and_changes_no_batch(tmp_path, monkeypatch):
    path = tmp_path / "data.npz"
    save_npz(path, {"train": _split(23), "test": _split(4, seed=1)}, num_classes=5)
    source = get_source("npz", path)
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    free = source.as_dataset("train", 5)
    assert free.options().threading.private_threadpool_size is None
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")  # as a Dask worker given one core
    limited = source.as_dataset("train", 5)
    assert limited.options().threading.private_threadpool_size == 1
    assert limited.options().threading.max_intra_op_parallelism == 1
    for a, b in zip(free.as_numpy_iterator(), limited.as_numpy_iterator(), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
