"""heldout._core.locks: advisory file locks that name the holder's PID."""

import subprocess
import sys

import pytest

from heldout._core import locks
from heldout.errors import LockBusyError

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
