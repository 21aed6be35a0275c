"""Durable renames of finished temporary files, several at a time in worker threads.

Each extracted file is fsynced before its final name appears; with several fsyncs in
flight the file system commits them together, so the tar thread hands finished files to a
few workers and goes on reading. Outcomes come back in submission order.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import os
from collections.abc import Callable
from typing import BinaryIO

from heldout.download.errors import DownloadError

_WORKERS = 8  # fsyncs in flight; beyond a few the journal commits no more at once
_MAX_PENDING = 32  # files written but not yet renamed (open descriptors, bounded)


@dataclasses.dataclass
class _Pending:
    target: str
    future: concurrent.futures.Future
    undo: Callable[[], None]


def _fsync_and_rename(
    out: BinaryIO, tmp: str, target: str, check: Callable[[int], None] | None
) -> None:
    try:
        try:
            os.fsync(out.fileno())
            if check is not None:
                check(out.fileno())
        finally:
            with contextlib.suppress(OSError):  # flushed already; a failed fsync is raised
                out.close()
        os.replace(tmp, target)  # replaces a symbolic link itself, never what it points to
    except OSError as e:
        remove_quietly(tmp)
        raise DownloadError(
            f"{target}: writing failed ({e.strerror or e}); its temporary was removed"
        ) from None
    except BaseException:
        remove_quietly(tmp)
        raise


def remove_quietly(path: str) -> None:
    """Removes a temporary of ours if it is still there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Committer:
    """fsyncs and renames written temporaries in worker threads; a context manager.

    Args:
      on_committed: called in the submitting thread with each target once it is in place.
    """

    def __init__(self, on_committed: Callable[[str], None]):
        self._on_committed = on_committed
        self._pool = concurrent.futures.ThreadPoolExecutor(
            _WORKERS, thread_name_prefix="heldout-commit"
        )
        self._pending: collections.deque[_Pending] = collections.deque()
        self._targets: set[str] = set()

    def submit(
        self,
        out: BinaryIO,
        tmp: str,
        target: str,
        undo: Callable[[], None],
        check: Callable[[int], None] | None = None,
    ) -> None:
        """Hands over `out` (flushed, still open, written to `tmp`) to become `target`.

        `check(fd)`, after the fsync and before the rename, raises if the file must not
        become `target`. `undo` is called (in this thread) if that fails; the error is raised
        by a later `submit`, `wait_for` or `close`. Blocks while too many files are pending.
        A write error is a DownloadError naming `target`; the temporary is removed.
        """
        future = self._pool.submit(_fsync_and_rename, out, tmp, target, check)
        self._pending.append(_Pending(target, future, undo))
        self._targets.add(target)
        self._settle(keep=_MAX_PENDING)

    def wait_for(self, target: str) -> None:
        """Waits until a pending file at `target` (an archive naming a path twice) is in
        place, so that it is seen, compared and never raced with."""
        if target in self._targets:
            self._settle(keep=0)

    def _settle(self, keep: int) -> None:
        """Takes outcomes in order, waiting for the oldest while more than `keep` remain;
        the first failure is raised once every earlier outcome is taken."""
        error = None
        while self._pending and (len(self._pending) > keep or self._pending[0].future.done()):
            pending = self._pending.popleft()
            self._targets.discard(pending.target)
            try:
                pending.future.result()
            except BaseException as e:
                pending.undo()
                error = error or e
                keep = 0  # stop: wait for the rest, then report
                continue
            self._on_committed(pending.target)
        if error is not None:
            raise error

    def close(self) -> None:
        """Waits for every pending file (each ends whole at its name, or not at all)."""
        try:
            self._settle(keep=0)
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Committer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
