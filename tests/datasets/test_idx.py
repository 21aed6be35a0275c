"""IDX reading: real Debian Fashion-MNIST files when installed, and small generated files."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from heldout.datasets import DatasetError, get_source, load_idx_split
from heldout.datasets.idx import DEBIAN_FASHION_MNIST_DIR, read_idx


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_split(directory: Path, prefix: str, images, labels, gzipped: bool) -> None:
    for kind, array, dims in (("images", images, 3), ("labels", labels, 1)):
        name = f"{prefix}-{kind}-idx{dims}-ubyte"
        data = _idx_bytes(array)
        if gzipped:
            (directory / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)


@pytest.fixture
def tiny_idx(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    _write_split(tmp_path, "train", images, labels, gzipped=True)
    _write_split(tmp_path, "t10k", images[:3], labels[:3], gzipped=False)
    return tmp_path, images, labels


def test_reads_gzipped_and_plain_files(tiny_idx):
    directory, images, labels = tiny_idx
    train = load_idx_split(directory, "train")
    assert train.images.shape == (7, 28, 28, 1) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64
    np.testing.assert_array_equal(train.images[..., 0], images)
    np.testing.assert_array_equal(train.labels, labels)
    test = load_idx_split(directory, "test")
    np.testing.assert_array_equal(test.images[..., 0], images[:3])


def test_source_batches_in_index_order(tiny_idx):
    directory, images, labels = tiny_idx
    source = get_source("mnist_idx", directory)
    assert source.split_size("train") == 7
    batches = list(source.as_dataset("train", batch_size=3).as_numpy_iterator())
    assert [len(b["index"]) for b in batches] == [3, 3, 1]
    index = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(index, np.arange(7))
    image = np.concatenate([b["image"] for b in batches])
    assert image.dtype == np.float32
    np.testing.assert_allclose(image[..., 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), labels)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda data: b"\x01\x02" + data[2:], "bad magic number"),
        (lambda data: data[:2] + b"\x0d" + data[3:], "data type 0x0d"),
        (lambda data: data[:-5], "truncated"),
        (lambda data: data + b"\x00", "trailing bytes"),
        (lambda data: data[:3] + b"\x01" + data[4:], r"1 dimension\(s\), expected 3"),
    ],
)
def test_malformed_files_name_the_file(tmp_path, corrupt, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(_idx_bytes(np.zeros((2, 28, 28), np.uint8))))
    with pytest.raises(DatasetError, match=message) as info:
        read_idx(path, expected_ndim=3)
    assert str(path) in str(info.value)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros(50, np.uint8)))[:-10])
    with pytest.raises(DatasetError, match="gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file_and_count_mismatch(tmp_path):
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        load_idx_split(tmp_path, "train")
    _write_split(tmp_path, "train", np.zeros((3, 28, 28)), np.zeros(2), gzipped=False)
    with pytest.raises(DatasetError, match="3 images but .* 2 labels"):
        load_idx_split(tmp_path, "train")
    with pytest.raises(DatasetError, match="unknown IDX split"):
        load_idx_split(tmp_path, "validation")


def test_unknown_split_and_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        get_source("fashion_mnist_idx", tmp_path / "nope")
    with pytest.raises(DatasetError, match="needs data_dir"):
        get_source("mnist_idx")


@pytest.mark.skipif(
    not Path(DEBIAN_FASHION_MNIST_DIR).is_dir(), reason="Debian dataset-fashion-mnist absent"
)
def test_debian_fashion_mnist():
    source = get_source("fashion_mnist_idx")
    assert (source.split_size("train"), source.split_size("test")) == (60000, 10000)
    train = source.load_arrays("train")
    # First labels of the published train-labels-idx1-ubyte (Ankle boot, T-shirt, ...).
    np.testing.assert_array_equal(train.labels[:6], [9, 0, 0, 3, 0, 2])
    np.testing.assert_array_equal(np.bincount(train.labels), [6000] * 10)


def test_written_slice_reads_back_as_the_first_examples(tiny_idx, tmp_path):
    from heldout.datasets.idx import IdxSource, write_idx, write_idx_slice

    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz", expected_ndim=3), array)
    directory, _, _ = tiny_idx
    source = IdxSource("mnist", directory)
    folder = write_idx_slice(tmp_path / "slice", source, num_train=2)
    sliced = IdxSource("mnist", folder)
    for split, count in (("train", 2), ("test", None)):
        full, part = source.load_arrays(split), sliced.load_arrays(split)
        np.testing.assert_array_equal(part.images, full.images[:count])
        np.testing.assert_array_equal(part.labels, full.labels[:count])
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{stem}.gz"
        for pair in (
            ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        )
        for stem in pair
    )  # no temporary left
