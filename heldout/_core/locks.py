"""`FileLock` (fcntl.flock) guards what two processes may write at once; a busy lock is a
`LockBusyError` naming the PIDs that hold it.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from heldout._core.atomic import PathLike, file_mode
from heldout._core.write_safety import ensure_dir, open_nofollow
from heldout.errors import LockBusyError

# ----------------------------------------------------------------------------- locks


def _lock_holders(lock_path: Path) -> list[int]:
    """PIDs holding a flock on `lock_path`, from /proc/locks (Linux); [] when unknown."""
    try:
        inode = lock_path.stat().st_ino
        with open("/proc/locks") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return []
    holders = []
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 12345 08:01:123456 0 EOF" ("->" marks waiters)
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        try:
            pid, where = int(parts[4]), parts[5]
        except ValueError:
            continue
        if where.rsplit(":", 1)[-1] == str(inode) and pid not in holders:
            holders.append(pid)
    return holders


class FileLock:
    """An advisory `fcntl.flock` on a lock file; use as a context manager.

    Shared locks let several writers work side by side (two trainers on one experiment);
    an exclusive lock is for what only one process may do (removing stale temporaries,
    rewriting a record). To do something only when alone and then share, take the lock
    exclusively without waiting, then `downgrade()`; if that fails, take it shared. (Linux
    converts a held flock by dropping it first, so a failed shared-to-exclusive upgrade
    would leave nothing held: there is deliberately no upgrade method.) The lock dies with
    its process, so a crash never leaves a lock behind; the lock file itself is left in
    place (removing it would race with a waiter).

    The lock file is opened with O_NOFOLLOW and must be a regular file: a link planted at
    its name is refused (`UnsafeWriteError`), never followed onto the file it names, and
    the owner's PID is written only into a file with no other hard link.

    Args:
      path: the lock file (created with the umask's mode if missing).
      what: what the lock guards, for the busy message ("training into /x").
      shared: take a shared (LOCK_SH) instead of an exclusive (LOCK_EX) lock.
      timeout_s: wait up to this long for a busy lock; 0 (default) fails at once, None
        waits forever.
    """

    def __init__(
        self,
        path: PathLike,
        what: str,
        *,
        shared: bool = False,
        timeout_s: float | None = 0.0,
    ):
        self.path = Path(path)
        self.what = what
        self.shared = shared
        self.timeout_s = timeout_s
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _try(self, fd: int, shared: bool) -> bool:
        flag = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, flag | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def acquire(self) -> FileLock:
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: lock already held by this object")
        ensure_dir(self.path.parent)
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT, file_mode())
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        try:
            while not self._try(fd, self.shared):
                if deadline is not None and time.monotonic() >= deadline:
                    raise self._busy()
                time.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if not self.shared:
            self._write_owner()
        return self

    def _write_owner(self) -> None:
        try:
            if os.fstat(self._fd).st_nlink != 1:
                return  # a hard link someone made: the file is not only ours to rewrite
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the PID is only for messages

    def _busy(self) -> LockBusyError:
        holders = [pid for pid in _lock_holders(self.path) if pid != os.getpid()]
        if not holders:
            try:
                recorded = self.path.read_text().split()
                holders = [int(recorded[0])] if recorded else []
            except (OSError, ValueError):
                holders = []
        who = "process " + ", ".join(str(pid) for pid in holders) if holders else "another process"
        return LockBusyError(
            f"{self.path}: {who} holds this lock ({self.what}); wait for it to finish, "
            "or stop it, and try again",
            holders=tuple(holders),
        )

    def downgrade(self) -> None:
        """Turns a held exclusive lock into a shared one (others may then join)."""
        if self._fd is None:
            raise RuntimeError(f"{self.path}: lock not held")
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        self.shared = True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
