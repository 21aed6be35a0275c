"""Who may do what in an experiment folder while several trainers write into it.

The training lock (shared; taken exclusively first so that a trainer alone removes the
leftovers of interrupted calls), one claim per run (so two processes never train the
same run) and the record lock of `experiment.json`: all `heldout._core.locks.FileLock`s,
which die with their process (docs/training.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from heldout._core.locks import FileLock
from heldout._core.write_safety import ensure_dir
from heldout.errors import LockBusyError

TRAINING_LOCK_FILE = ".training.lock"
CLAIM_SUFFIX = ".claim"
# How long a trainer waits for another one that holds the training lock exclusively: it
# only does so while removing leftovers, which takes seconds.
SHARE_WAIT_S = 60.0


class TrainingLock:
    """The experiment's training lock; use as a context manager.

    After entering, `alone` says whether no other trainer was working in the folder: the
    lock is then held exclusively until `share()` is called (do the cleanup in between).

    Raises (on enter):
      LockBusyError: another process held the lock exclusively for over `SHARE_WAIT_S`
        (the message names its PID).
    """

    def __init__(self, experiment_dir: Path):
        self.path = Path(experiment_dir) / TRAINING_LOCK_FILE
        self.what = f"training into {experiment_dir}"
        self._lock: FileLock | None = None
        self.alone = False

    def __enter__(self) -> TrainingLock:
        lock = FileLock(self.path, self.what, shared=False, timeout_s=0)
        try:
            lock.acquire()
            self.alone = True
        except LockBusyError:
            lock = FileLock(self.path, self.what, shared=True, timeout_s=SHARE_WAIT_S)
            lock.acquire()
            self.alone = False
        self._lock = lock
        return self

    def share(self) -> None:
        """Lets other trainers join (after the cleanup that needed the folder to oneself)."""
        if self._lock is not None and not self._lock.shared:
            self._lock.downgrade()

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def claim_path(ratio_dir: Path, run_id: int) -> Path:
    """The claim lock file of one run (hidden: the release reader ignores it)."""
    return ratio_dir / f".{run_id}{CLAIM_SUFFIX}"


class RunClaim(FileLock):
    """A claim on one run; its file is removed when the claim ends.

    Removing a lock file is safe only if every locker checks, once it holds the lock,
    that the file it locked is still the one at the path (a process that opened the file
    just before it was removed would otherwise hold a lock no one else sees): `acquire`
    does, and starts again on a fresh file when not.
    """

    def acquire(self) -> RunClaim:
        while True:
            super().acquire()
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(self._fd).st_ino:
                return self
            super().release()

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)  # while still held: see the class docstring
        super().release()


def claim_run(ratio_dir: Path, run_id: int) -> RunClaim:
    """Claims run `run_id` of `ratio_dir` for this process, without waiting.

    Returns:
      The held claim; release it when the run is written (or given up).

    Raises:
      LockBusyError: another process claims the run (the message names its PID).
    """
    ensure_dir(ratio_dir)
    claim = RunClaim(
        claim_path(ratio_dir, run_id), f"training run {run_id} of {ratio_dir}", timeout_s=0
    )
    return claim.acquire()
