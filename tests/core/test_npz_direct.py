"""The direct .npz reader and writer agree with np.load / np.savez, and step aside otherwise."""

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from heldout._core.npz_direct_read import read_stored_npz
from heldout._core.npz_direct_write import write_stored_npz

ARRAYS = [
    {"a": np.arange(5), "b": np.array([True, False])},
    {"scalar": np.float32(3.5), "empty": np.zeros((0, 3)), "matrix": np.arange(6).reshape(2, 3)},
    {"big_endian": np.arange(4, dtype=">i4"), "text": np.array(["ab", "c"]), "s": np.asarray("x")},
    {"fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "strided": np.arange(10)[::3]},
]


def _assert_same(got, expected):
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        value = np.asarray(value)
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value)


@pytest.mark.parametrize("arrays", ARRAYS[:3])
def test_reader_gives_what_np_load_gives(tmp_path, arrays):
    path = tmp_path / "a.npz"
    np.savez(path, **arrays)
    got = read_stored_npz(path)
    with np.load(path) as expected:
        _assert_same(got, {key: expected[key] for key in expected.files})
    assert all(a.flags.aligned and a.flags.writeable for a in got.values())


def test_reader_leaves_other_files_to_the_one_loader(tmp_path):
    np.savez_compressed(tmp_path / "deflated.npz", a=np.arange(5))
    np.savez(tmp_path / "objects.npz", a=np.array([object()], dtype=object))
    np.savez(tmp_path / "fortran.npz", a=np.asfortranarray(np.ones((2, 3))))
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "text.npz").write_text("not a zip")
    np.savez(tmp_path / "whole.npz", a=np.arange(100))
    whole = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(whole[: len(whole) - 30])
    for name in ("deflated", "objects", "fortran", "empty", "text", "truncated", "missing"):
        assert read_stored_npz(tmp_path / f"{name}.npz") is None, name


@pytest.mark.parametrize("arrays", ARRAYS)
def test_writer_writes_an_npz_that_np_load_and_zipfile_read(tmp_path, arrays):
    path = tmp_path / "w.npz"
    with open(path, "wb") as f:
        write_stored_npz(f, arrays)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None  # every CRC right
        assert sorted(archive.namelist()) == sorted(f"{key}.npy" for key in arrays)
    with np.load(path) as loaded:
        _assert_same({key: loaded[key] for key in loaded.files}, arrays)
    _assert_same(read_stored_npz(path), arrays)


def test_writer_leaves_object_arrays_to_np_savez(tmp_path):
    path = tmp_path / "o.npz"
    with open(path, "wb") as f:
        write_stored_npz(f, {"o": np.array([None], dtype=object), "a": np.arange(2)})
    with np.load(path, allow_pickle=True) as loaded:
        assert loaded["o"][0] is None and loaded["a"].tolist() == [0, 1]


@pytest.mark.parametrize("folder", ["tmp", "/dev/shm"])
def test_large_members_written_past_the_page_cache_hold_the_same_bytes(
    tmp_path, monkeypatch, folder
):
    """O_DIRECT for the aligned middle of large members (tmpfs may refuse it: then
    buffered); small thresholds here so that heads, bodies of several chunks and tails of
    odd lengths all occur."""
    import heldout._core.npz_direct_write as npz_direct

    base = tmp_path if folder == "tmp" else Path(folder)
    if not base.is_dir():
        pytest.skip(f"{folder} is not a folder here")
    rng = np.random.default_rng(4)
    arrays = {
        "small": np.arange(7, dtype=np.int16),
        "big": rng.random((123, 457)).astype(np.float32),  # 224 844 bytes, odd offset
        "odd": rng.integers(0, 255, 50_001, dtype=np.uint8),
    }
    buffered = tmp_path / "buffered.npz"
    with open(buffered, "wb") as f:
        write_stored_npz(f, arrays)
    monkeypatch.setattr(npz_direct, "DIRECT_WRITE_MIN_BYTES", 10_000)
    monkeypatch.setattr(npz_direct, "DIRECT_WRITE_CHUNK", 3 * 4096)
    direct = base / f"direct-{tmp_path.name}.npz"
    writes = []
    pwrite = os.pwrite
    monkeypatch.setattr(
        npz_direct.os, "pwrite", lambda fd, data, at: writes.append(at) or pwrite(fd, data, at)
    )
    try:
        with open(direct, "wb") as f:
            write_stored_npz(f, arrays)
        assert direct.read_bytes() == buffered.read_bytes()
        try:  # where the file system takes O_DIRECT, the large members went that way
            os.close(os.open(direct, os.O_WRONLY | os.O_DIRECT))
            supported = True
        except OSError:
            supported = False
        if supported:
            assert len(writes) >= 4 and all(at % 4096 == 0 for at in writes), writes
        _assert_same(read_stored_npz(direct), arrays)
    finally:
        direct.unlink(missing_ok=True)


def test_row_blocks_are_written_as_the_array_would_be_and_only_once(tmp_path, monkeypatch):
    import heldout._core.npz_direct_write as npz_direct
    from heldout._core.atomic import write_npz_atomic
    from heldout._core.row_blocks import RowBlocks

    rng = np.random.default_rng(8)
    matrix = rng.random((37, 1001)).astype(np.float32)
    matrix[5] = np.nan  # an all-NaN row: its maximum is NaN
    matrix[6, ::2] = np.nan

    def streamed():
        return RowBlocks(matrix.shape, np.float32, lambda: iter(np.array_split(matrix, 5)))

    others = {"count": np.arange(9, dtype=np.int32), "name": np.asarray("popcount")}
    as_array = tmp_path / "array.npz"
    write_npz_atomic(as_array, {"first": others["count"], "m": matrix, **others})
    for threshold in (1 << 40, 10_000):  # buffered, and O_DIRECT for the member's middle
        monkeypatch.setattr(npz_direct, "DIRECT_WRITE_MIN_BYTES", threshold)
        monkeypatch.setattr(npz_direct, "DIRECT_WRITE_CHUNK", 2 * 4096)
        blocks = streamed()
        path = tmp_path / f"blocks-{threshold}.npz"
        write_npz_atomic(path, {"first": others["count"], "m": blocks, **others})
        assert path.read_bytes() == as_array.read_bytes()
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None
        np.testing.assert_array_equal(blocks.row_fmax, np.fmax.reduce(matrix, axis=1))
        with pytest.raises(ValueError, match="already consumed"):
            write_npz_atomic(tmp_path / "again.npz", {"m": blocks})
    assert not (tmp_path / "again.npz").exists()

    bad = RowBlocks((37, 1001), np.float32, lambda: iter([matrix[:30]]))  # rows missing
    with pytest.raises(ValueError, match="held 30 rows of 37"):
        write_npz_atomic(tmp_path / "short.npz", {"m": bad})
    wrong = RowBlocks((37, 1001), np.float32, lambda: iter([matrix.astype(np.float64)]))
    with pytest.raises(ValueError, match="does not fit"):
        write_npz_atomic(tmp_path / "wrong.npz", {"m": wrong})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["array.npz", "blocks-1099511627776.npz", "blocks-10000.npz"]
    )


def test_a_real_write_error_propagates_and_leaves_no_descriptor_open(tmp_path, monkeypatch):
    """An I/O error (not O_DIRECT's refusal) stops the save, and the writer's second
    descriptor of the file is closed all the same."""
    import errno

    import heldout._core.npz_direct_write as npz_direct

    try:
        os.close(os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
    except OSError:
        pytest.skip(f"{tmp_path} does not take O_DIRECT")
    monkeypatch.setattr(npz_direct, "DIRECT_WRITE_MIN_BYTES", 10_000)
    monkeypatch.setattr(npz_direct, "DIRECT_WRITE_CHUNK", 2 * 4096)

    def failing_pwrite(fd, data, at):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(npz_direct.os, "pwrite", failing_pwrite)
    open_before = _open_files()
    with open(tmp_path / "out.npz", "wb") as f:
        with pytest.raises(OSError, match="Input/output error"):
            write_stored_npz(f, {"big": np.zeros(50_000, np.float32)})
        leaked = {fd: what for fd, what in _open_files().items() if fd not in open_before}
        leaked.pop(f.fileno(), None)
    assert not leaked, leaked


def _open_files() -> dict[int, str]:
    """This process's open descriptors and what they point at (the listing's own
    descriptor, gone once listed, left out)."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return found
