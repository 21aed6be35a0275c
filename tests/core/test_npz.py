"""heldout._core.npz: the one npz loader names the file for every broken case."""

import zipfile

import numpy as np
import pytest

from heldout._core import npz
from heldout.errors import AuxArraysError, HeldoutError, NpzFileError


def _written(name, data):
    def make(folder):
        (folder / name).write_bytes(data)
        return folder / name

    return make


def _truncated(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, a=np.arange(1000))
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(good.read_bytes()[:300])
    return bad


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.npz", "file not found"),
        (_written("empty.npz", b""), "the file is empty"),
        (_written("text.npz", b"hello"), "not a numpy .npz or .npy file"),
        (_truncated, "cannot read"),
        (lambda p: p, "is a folder"),
    ],
)
def test_load_npz_names_the_file_for_every_broken_case(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(NpzFileError, match=message) as caught:
        npz.load_npz(path)
    assert str(caught.value).startswith(str(path))
    assert str(caught.value).count(str(path)) == 1  # said once, not wrapped twice
    assert isinstance(caught.value, HeldoutError)


def test_load_npz_refuses_pickles_and_checks_keys(tmp_path):
    pickled = tmp_path / "p.npz"
    np.savez(pickled, names=np.array(["a", {"x": 1}], dtype=object))
    with pytest.raises(NpzFileError, match="pickled object arrays"):
        npz.load_npz(pickled)
    assert npz.load_npz(pickled, allow_pickle=True)["names"][1] == {"x": 1}
    plain = tmp_path / "k.npz"
    np.savez(plain, a=np.arange(2))
    with pytest.raises(AuxArraysError, match=r"missing arrays \['b'\]"):
        npz.load_npz(plain, keys=["a", "b"], error=AuxArraysError)
    np.save(tmp_path / "v.npy", np.arange(4))
    np.testing.assert_array_equal(npz.load_npz(tmp_path / "v.npy")[""], np.arange(4))


def test_corrupt_zip_member_is_an_npz_error(tmp_path):
    path = tmp_path / "c.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.npy", b"\x93NUMPY" + b"\x00" * 200)
    with pytest.raises(NpzFileError):
        npz.load_npz(path)
