"""heldout._core.npz and the direct reader on files built to hurt: what a file declares is
checked before anything is allocated or inflated, and every refusal names the file."""

import zipfile

import numpy as np
import pytest

from heldout._core import npz
from heldout._core.npz_direct_read import read_stored_npz
from heldout.errors import NpzFileError


def _header(shape, descr="<i8"):
    text = repr({"descr": descr, "fortran_order": False, "shape": shape})
    return np.lib.format._wrap_header(text, (1, 0))


def test_an_npy_declaring_more_than_it_holds_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(_header((10**12,)) + bytes(64))
    with pytest.raises(NpzFileError, match=r"declares shape \(1000000000000,\)") as caught:
        npz.load_npz(path)
    assert str(caught.value).startswith(str(path))


def test_a_bound_refuses_what_the_caller_cannot_hold(tmp_path):
    path = tmp_path / "big.npz"
    np.savez(path, a=np.zeros(1000))
    with pytest.raises(NpzFileError, match="more than the 4000 bytes"):
        npz.load_npz(path, max_bytes=4000)
    assert npz.load_npz(path, max_bytes=9000)["a"].size == 1000
    assert read_stored_npz(path, max_bytes=4000) is None  # left to the loader, which says why
    assert read_stored_npz(path)["a"].size == 1000


def test_members_compressed_in_ways_numpy_never_writes_are_not_inflated(tmp_path):
    path = tmp_path / "bz.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("a.npy", _header((4,)) + bytes(32))
    with pytest.raises(NpzFileError, match="a.npy is compressed with method 12"):
        npz.load_npz(path)


@pytest.mark.parametrize("tail", [b"", b"\x01\x02" + bytes(100)])
def test_bytes_starting_with_pk_are_not_called_pickles(tmp_path, tail):
    path = tmp_path / "pk.npz"
    path.write_bytes(b"PK" + tail + b"not a zip")
    with pytest.raises(NpzFileError, match=r"not a valid \.npz \(zip\) file") as caught:
        npz.load_npz(path)
    assert "pickled" not in str(caught.value)


def test_an_encrypted_member_is_one_error(tmp_path):
    path = tmp_path / "encrypted.npz"
    np.savez(path, a=np.arange(3))
    data = bytearray(path.read_bytes())
    data[6] |= 1  # the local header's "encrypted" flag
    data[data.rfind(b"PK\x01\x02") + 8] |= 1  # and the central directory's
    path.write_bytes(bytes(data))
    with pytest.raises(NpzFileError, match="a.npy is encrypted"):
        npz.load_npz(path)


def _compressed(path):
    np.savez_compressed(path, a=np.arange(1000))
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("a.npy")
    data = bytearray(path.read_bytes())
    name_len, extra_len = (
        int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"),
        int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little"),
    )
    return data, info.header_offset + 30 + name_len + extra_len


def test_corrupt_deflated_data_is_one_error(tmp_path):
    path = tmp_path / "corrupt.npz"
    data, start = _compressed(path)
    data[start : start + 8] = b"\xff" * 8  # block type 3: no such deflate block
    path.write_bytes(bytes(data))
    with pytest.raises(NpzFileError, match="cannot read") as caught:
        npz.load_npz(path)
    assert str(caught.value).startswith(str(path))


def test_a_zip_version_zipfile_cannot_read_is_one_error(tmp_path):
    path = tmp_path / "version.npz"
    data, _ = _compressed(path)
    data[data.rfind(b"PK\x01\x02") + 6] = 0xE8  # "version needed to extract": 23.2
    path.write_bytes(bytes(data))
    with pytest.raises(NpzFileError, match="zip file version") as caught:
        npz.load_npz(path)
    assert str(caught.value).startswith(str(path))
