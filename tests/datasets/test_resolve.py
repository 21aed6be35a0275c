"""The one resolver of dataset names: the union of evaluation's and training's names."""

import numpy as np
import pytest
from tiny_release import random_split

from heldout.datasets import DatasetError, get_source, open_source
from heldout.datasets.idx import write_idx
from heldout.datasets.numpy_source import NpzSource, save_npz
from heldout.datasets.resolve import SOURCE_NAMES, is_idx_folder


def _split(n, seed=0):
    return random_split(n, (28, 28, 1), 3, np.random.default_rng(seed))


def _idx_folder(folder):
    folder.mkdir()
    for images, labels, n in (
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 6),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 3),
    ):
        split = _split(n)
        write_idx(folder / f"{images}.gz", split.images[..., 0])
        write_idx(folder / f"{labels}.gz", split.labels.astype(np.uint8))
    return folder


def test_unknown_name_without_data_dir_lists_the_known_names():
    with pytest.raises(DatasetError, match="unknown data source 'no_such'") as caught:
        get_source("no_such")
    for name in SOURCE_NAMES:
        assert name in str(caught.value)


def test_a_data_dir_that_is_no_folder_is_refused_for_tfds_names(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(DatasetError, match="file.txt: not a folder; svhn_cropped reads"):
        open_source("svhn_cropped", path)


@pytest.mark.parametrize("name", ["mnist", "mnist_idx"])
def test_idx_names_and_training_names_on_an_idx_folder_are_one_source(tmp_path, name):
    folder = _idx_folder(tmp_path / "idx")
    assert is_idx_folder(folder) and not is_idx_folder(tmp_path)
    opened = open_source(name, folder)
    assert (opened.name, opened.index_order, opened.kind) == ("mnist_idx", "idx", "idx")
    assert opened.data_dir == str(folder.absolute())
    assert opened.source.split_size("train") == 6


def test_mnist_idx_needs_a_data_dir():
    with pytest.raises(DatasetError, match="mnist_idx needs data_dir"):
        open_source("mnist_idx")


def test_npz_is_a_file_with_the_splits_asked_for(tmp_path):
    with pytest.raises(DatasetError, match="npz needs data_dir: the path"):
        open_source("npz")
    with pytest.raises(DatasetError, match="npz needs data_dir to be a .npz file"):
        open_source("npz", tmp_path)
    path = tmp_path / "train_only.npz"
    save_npz(path, {"train": _split(5)}, num_classes=3)
    assert isinstance(get_source("npz", path), NpzSource)  # evaluation asks for no split
    with pytest.raises(DatasetError, match="has no test split; needed: x_train"):
        open_source("npz", path, splits=("train", "test"))
    opened = open_source("npz", path, splits=("train",))
    assert (opened.name, opened.index_order, opened.kind) == ("npz", "npz", "npz")


def test_data_dir_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "d.npz"
    save_npz(path, {"train": _split(5), "test": _split(2)}, num_classes=3)
    assert open_source("npz", "~/d.npz").data_dir == str(path)


def test_imagenet_needs_a_data_dir():
    with pytest.raises(DatasetError, match="imagenet needs data_dir"):
        get_source("imagenet")
