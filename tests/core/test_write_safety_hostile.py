"""Writes on a hostile or careless shared disk: planted links, hard links and FIFOs where
a lock goes, file names that are not UTF-8, a file where an output folder goes, and a full
disk (a file-size limit in a child process). Real files, real processes, no mocks."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from heldout._core import atomic
from heldout._core.locks import FileLock
from heldout.errors import UnsafeWriteError

REFUSED = "is a symbolic link; refusing to write through it"


def test_lock_refuses_a_planted_link_and_leaves_its_target_alone(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock = tmp_path / "out" / ".x.lock"
    lock.parent.mkdir()
    lock.symlink_to(victim)
    with pytest.raises(UnsafeWriteError, match=f"^{lock} {REFUSED}$"):
        FileLock(lock, "testing").acquire()
    assert victim.read_text() == "precious\n"


def test_lock_refuses_a_dangling_link_and_creates_nothing_at_its_target(tmp_path):
    target = tmp_path / "elsewhere"
    lock = tmp_path / ".x.lock"
    lock.symlink_to(target)
    with pytest.raises(UnsafeWriteError, match=REFUSED):
        FileLock(lock, "testing", shared=True).acquire()
    assert not target.exists()


def test_lock_never_rewrites_a_file_hard_linked_to_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.link(victim, tmp_path / ".x.lock")
    with FileLock(tmp_path / ".x.lock", "testing"):
        pass
    assert victim.read_text() == "precious\n"


def test_lock_refuses_a_fifo_without_hanging(tmp_path):
    os.mkfifo(tmp_path / ".x.lock")
    with pytest.raises(UnsafeWriteError, match="is not a regular file"):
        FileLock(tmp_path / ".x.lock", "testing").acquire()


def test_atomic_write_replaces_a_planted_link_not_its_target(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "out.json").symlink_to(victim)
    atomic.write_json_atomic(tmp_path / "out.json", {"k": 1})
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "out.json").is_symlink()


def test_a_run_folder_is_never_renamed_onto_a_planted_link(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run").symlink_to(tmp_path / "elsewhere")
    tmp = atomic.make_temp_dir(tmp_path, ".run.")
    with pytest.raises(UnsafeWriteError, match=f"^{tmp_path / 'run'} {REFUSED}$"):
        atomic.commit_dir(tmp, tmp_path / "run")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_atomic_writes_work_for_names_that_are_not_utf8(tmp_path):
    for raw in (b"scores-\xff.npz", b"\xfe" * 247 + b".npz"):
        name = os.fsdecode(raw)
        atomic.write_npz_atomic(tmp_path / name, {"x": np.arange(3)})
        atomic.probe_writable(tmp_path / name)
        with atomic.atomic_open(tmp_path / (name[:-4] + ".txt"), "w") as f:
            f.write("x")
        assert raw in os.listdir(os.fsencode(tmp_path))
        assert np.load(tmp_path / name)["x"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("where", ["blocker", "blocker/deeper"])
def test_an_output_folder_that_is_a_file_is_said_so(tmp_path, where):
    (tmp_path / "blocker").write_text("a file")
    for write in (
        lambda: atomic.write_text_atomic(tmp_path / where / "o.txt", "x"),
        lambda: FileLock(tmp_path / where / ".x.lock", "testing").acquire(),
        lambda: atomic.make_temp_dir(tmp_path / where, ".run."),
    ):
        with pytest.raises(UnsafeWriteError, match=f"^{tmp_path / 'blocker'} exists and is not"):
            write()
    assert (tmp_path / "blocker").read_text() == "a file"


FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    import numpy as np
    from heldout._core import atomic
    from heldout.errors import HeldoutError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
    out = sys.argv[1]
    try:
        if out.endswith(".npz"):
            atomic.write_npz_atomic(out, {"x": np.zeros(1 << 16)})
        else:
            atomic.write_text_atomic(out, "x" * (1 << 18))
    except HeldoutError as error:
        print(error)
        sys.exit(3)
    """
)


@pytest.mark.parametrize("name", ["scores.npz", "notes.txt"])
def test_a_full_disk_leaves_no_temporary_and_names_the_file(tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(out / name)], capture_output=True, text=True
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.strip() == (
        f"could not write {out / name}: file too large (errno 27); nothing was left behind"
    )
    assert os.listdir(out) == []
