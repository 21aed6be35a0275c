"""Attribution files in every accepted layout and orientation, and the ones refused."""

import numpy as np
import pytest

from heldout.errors import InputFileError
from heldout.scores.attribution.inputs import TEST_BY_TRAIN, TRAIN_BY_TEST, load_attribution
from heldout.scores.file import INFLUENCE, INFLUENCE_TOPK_INDEX, INFLUENCE_TOPK_VALUE

N_TRAIN, N_TEST = 9, 4


@pytest.fixture
def tau():
    return np.arange(N_TEST * N_TRAIN, dtype=np.float32).reshape(N_TEST, N_TRAIN)


def test_dense_npy_ours_and_traks_orientation(tmp_path, tau):
    np.save(tmp_path / "ours.npy", tau)
    np.save(tmp_path / "trak.npy", tau.T.astype(np.float16))
    ours = load_attribution(tmp_path / "ours.npy", N_TRAIN, N_TEST)
    trak = load_attribution(tmp_path / "trak.npy", N_TRAIN, N_TEST)
    assert (ours.orientation, trak.orientation) == (TEST_BY_TRAIN, TRAIN_BY_TEST)
    np.testing.assert_array_equal(ours.attribution, tau)
    np.testing.assert_array_equal(trak.attribution, tau)
    assert trak.attribution.flags.c_contiguous and ours.layout == "dense"


def test_dense_npz_single_array_and_influence_key(tmp_path, tau):
    np.savez(tmp_path / "one.npz", scores=tau)
    np.savez(tmp_path / "ours.npz", **{INFLUENCE: tau, "cscore": np.zeros(N_TRAIN)})
    assert load_attribution(tmp_path / "one.npz", N_TRAIN, N_TEST).key == "scores"
    loaded = load_attribution(tmp_path / "ours.npz", N_TRAIN, N_TEST)
    assert loaded.key == INFLUENCE
    np.testing.assert_array_equal(loaded.attribution, tau)


def test_square_needs_orientation(tmp_path):
    square = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.save(tmp_path / "square.npy", square)
    with pytest.raises(InputFileError, match=r"square.npy: .*ambiguous.*--orientation"):
        load_attribution(tmp_path / "square.npy", 4, 4)
    loaded = load_attribution(tmp_path / "square.npy", 4, 4, orientation=TRAIN_BY_TEST)
    np.testing.assert_array_equal(loaded.attribution, square.T)
    loaded = load_attribution(tmp_path / "square.npy", 4, 4, orientation=TEST_BY_TRAIN)
    np.testing.assert_array_equal(loaded.attribution, square)


def test_topk_our_keys_with_padding_and_plain_index_value(tmp_path):
    index = np.array([[3, 1], [0, -1], [8, 2], [5, 4]])
    value = np.array([[0.5, 0.25], [1.0, np.nan], [2.0, -1.0], [0.0, 3.0]], np.float32)
    np.savez(tmp_path / "scores.npz", **{INFLUENCE_TOPK_INDEX: index, INFLUENCE_TOPK_VALUE: value})
    np.savez(tmp_path / "plain.npz", index=index[:, :1], value=value[:, :1])
    loaded = load_attribution(tmp_path / "scores.npz", N_TRAIN, N_TEST)
    assert loaded.layout == "top-k"
    sparse = loaded.attribution
    assert sparse.shape == (N_TEST, N_TRAIN)
    assert sparse.value[1, 1] == 0.0 and np.all(np.isfinite(sparse.value))
    assert load_attribution(tmp_path / "plain.npz", N_TRAIN, N_TEST).key == "index+value"


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"a": np.zeros((N_TEST, N_TRAIN + 1))}, "does not fit this experiment"),
        ({"a": np.zeros((N_TEST + 1, N_TRAIN))}, "does not fit this experiment"),
        ({"a": np.full((N_TEST, N_TRAIN), np.nan)}, "NaN"),
        ({"a": np.zeros(N_TRAIN)}, "no attribution found"),
        ({"index": np.zeros((N_TEST, 2), int), "value": np.full((N_TEST, 2), np.nan)}, "NaN"),
        ({"index": np.full((N_TEST, 2), N_TRAIN), "value": np.zeros((N_TEST, 2))}, "outside"),
        ({"index": np.zeros((N_TEST + 1, 2), int), "value": np.zeros((N_TEST + 1, 2))}, "fit"),
    ],
)
def test_bad_attributions_are_refused_naming_the_file(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputFileError, match=message) as caught:
        load_attribution(path, N_TRAIN, N_TEST)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_missing_and_garbage_files_are_one_line(tmp_path):
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    for name in ("garbage.npz", "absent.npy"):
        with pytest.raises(InputFileError, match=name):
            load_attribution(tmp_path / name, N_TRAIN, N_TEST)
