"""MD5 of archives and local files, and the progress reports of a download.

`Reporter` counts bytes and members from several threads and calls the user's callback
one call at a time; `md5_file` and `verify_file` check a local file without downloading.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

from heldout.download.errors import ChecksumMismatchError
from heldout.download.local import check_regular
from heldout.download.resume import file_chunks
from heldout.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Progress:
    """A progress report.

    Attributes:
      bytes_done: archive bytes hashed so far, counting a local prefix that was re-read.
      bytes_total: the archive size, when known.
      members_extracted: files written or found already present (with `extract`).
      note: a one-off event worth telling the user (a retry, a resumed prefix), else None.
    """

    bytes_done: int
    bytes_total: int | None
    members_extracted: int = 0
    note: str | None = None


ProgressCallback = Callable[[Progress], None]


def normalize_md5(value: str) -> str:
    """Lowercase hex; raises UsageError (a ValueError) unless it is 32 hex digits."""
    value = value.strip().lower()
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise UsageError(f"not an MD5 (32 hex digits): {value!r}")
    return value


def md5_file(path, progress: ProgressCallback | None = None) -> str:
    """MD5 of a local file (lowercase hex), reporting progress as it reads.

    Raises:
      DownloadError: `path` is missing or not a regular file (a FIFO or /dev/zero would
        never end); checked before reading.
    """
    path = Path(path)
    reporter = Reporter(progress, check_regular(path, "the file to verify").st_size)
    return md5_of(path, reporter)


def md5_of(path: Path, reporter: Reporter) -> str:
    md5 = hashlib.md5()
    for chunk in file_chunks(path, chunk_bytes=8 << 20):
        md5.update(chunk)
        reporter.add_bytes(len(chunk))
    return md5.hexdigest()


def verify_file(path, expected_md5: str, progress: ProgressCallback | None = None) -> str:
    """Checks a local file's MD5.

    Returns:
      The MD5 (lowercase hex).

    Raises:
      ChecksumMismatchError: it differs from `expected_md5` (the file is left untouched).
      DownloadError: `path` is missing or not a regular file.
    """
    expected = normalize_md5(expected_md5)
    actual = md5_file(path, progress)
    if actual != expected:
        raise ChecksumMismatchError(
            f"{path}: MD5 mismatch: expected {expected}, got {actual}",
            expected=expected,
            actual=actual,
            kept_path=Path(path),
        )
    return actual


class Reporter:
    """Counts progress and calls the user's callback, one call at a time (several threads
    report: the network stage counts bytes, the tar stage counts members)."""

    def __init__(self, callback: ProgressCallback | None, total: int | None):
        self._callback = callback
        self._lock = threading.Lock()
        self.total = total
        self.bytes_done = 0
        self.members = 0
        self.retries = 0

    def _emit(self, note: str | None = None) -> None:
        if self._callback is not None:
            with self._lock:
                self._callback(Progress(self.bytes_done, self.total, self.members, note))

    def add_bytes(self, n: int) -> None:
        self.bytes_done += n
        self._emit()

    def set_members(self, n: int) -> None:
        self.members = n
        self._emit()

    def note(self, message: str) -> None:
        self._emit(message)

    def retry(self, message: str) -> None:
        self.retries += 1
        self._emit(message)
