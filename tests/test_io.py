"""heldout.io: atomic durable writes with umask modes, the one npz loader, locks, disk checks."""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from heldout._core import atomic, locks, npz, provenance, system
from heldout.errors import (
    AuxArraysError,
    HeldoutError,
    InsufficientSpaceError,
    LockBusyError,
    NpzFileError,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_writes_get_the_mode_open_would_give(tmp_path, umask_022):
    atomic.write_text_atomic(tmp_path / "a.txt", "hi")
    atomic.write_npz_atomic(tmp_path / "b.npz", {"x": np.arange(3)})
    atomic.write_json_atomic(tmp_path / "sub" / "c.json", {"k": 1})
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    for name in ("a.txt", "b.npz", "sub/c.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o644
    os.umask(0o077)
    atomic.write_text_atomic(tmp_path / "private.txt", "x")
    assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600


def test_current_umask_reads_without_changing_it(umask_022):
    assert atomic.current_umask() == 0o022
    assert os.umask(0o022) == 0o022


def test_failed_atomic_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic.atomic_open(target, "w") as f:
        f.write("new")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_temp_dirs_get_the_folder_mode_and_commit_never_replaces(tmp_path, umask_022):
    tmp = atomic.make_temp_dir(tmp_path, ".run.")
    assert tmp.stat().st_mode & 0o777 == 0o755
    (tmp / "f").write_text("x")
    atomic.commit_dir(tmp, tmp_path / "run")
    assert (tmp_path / "run" / "f").read_text() == "x"
    other = atomic.make_temp_dir(tmp_path, ".run.")
    (other / "g").write_text("y")
    with pytest.raises(FileExistsError, match="already exists"):
        atomic.commit_dir(other, tmp_path / "run")
    assert not (tmp_path / "run" / "g").exists()


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


_HOLD = """
import sys, time
from heldout._core.locks import FileLock
with FileLock(sys.argv[1], "a test", shared=sys.argv[2] == "shared"):
    print("held", flush=True)
    time.sleep(30)
"""


def _holder(path, kind):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path), kind], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_busy_lock_names_the_holders_pid(tmp_path):
    lock = tmp_path / "x.lock"
    holder = _holder(lock, "exclusive")
    try:
        with pytest.raises(LockBusyError, match=f"process {holder.pid} holds this lock"):
            locks.FileLock(lock, "a test").acquire()
        with pytest.raises(LockBusyError):
            locks.FileLock(lock, "a test", shared=True).acquire()
    finally:
        holder.kill()
        holder.wait()
    with locks.FileLock(lock, "a test") as held:  # released when its process died
        assert held.held


def test_shared_locks_coexist_and_block_exclusive(tmp_path):
    lock = tmp_path / "x.lock"
    holder = _holder(lock, "shared")
    try:
        with locks.FileLock(lock, "mine", shared=True) as mine:
            assert mine.held and mine.shared
        with pytest.raises(LockBusyError, match=str(holder.pid)) as caught:
            locks.FileLock(lock, "mine").acquire()
        assert caught.value.holders == (holder.pid,)
    finally:
        holder.kill()
        holder.wait()
    with locks.FileLock(lock, "mine") as mine:  # alone: exclusive, then shared with others
        mine.downgrade()
        assert mine.shared
        with locks.FileLock(lock, "another", shared=True) as other:
            assert other.held


def test_free_space_check_says_what_is_missing(tmp_path):
    system.check_free_space(tmp_path / "new" / "dir", 1, "one byte")
    with pytest.raises(InsufficientSpaceError, match=r"needs 1000.0 TB .* missing") as caught:
        system.check_free_space(tmp_path / "out", 10**15, "a huge archive")
    assert "a huge archive" in str(caught.value)


def test_file_identity_changes_with_the_file(tmp_path):
    path = tmp_path / "f"
    path.write_text("a")
    first = provenance.file_identity(path)
    assert first["path"] == str(path.absolute()) and first["size"] == 1
    os.utime(path, ns=(first["mtime_ns"] + 10**9, first["mtime_ns"] + 10**9))
    assert provenance.file_identity(path) != first


def test_atomic_writes_work_for_the_longest_names(tmp_path):
    name = "n" * 251 + ".npz"  # 255 bytes: the longest a file system allows
    atomic.write_npz_atomic(tmp_path / name, {"a": np.arange(2)})
    np.testing.assert_array_equal(npz.load_npz(tmp_path / name)["a"], np.arange(2))
