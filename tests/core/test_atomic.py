"""heldout._core.atomic: durable writes under a temporary name, with the modes open() gives."""

import os

import numpy as np
import pytest

from heldout._core import atomic, npz


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


def test_atomic_writes_work_for_the_longest_names(tmp_path):
    name = "n" * 251 + ".npz"  # 255 bytes: the longest a file system allows
    atomic.write_npz_atomic(tmp_path / name, {"a": np.arange(2)})
    np.testing.assert_array_equal(npz.load_npz(tmp_path / name)["a"], np.arange(2))
