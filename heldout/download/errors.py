"""The errors a download can end with; each message says what happened and where the data is.

Every one derives from `heldout.errors.DownloadError` (itself a `HeldoutError`), so a command
line catches them with the rest of the toolkit's errors and prints one line.
"""

from __future__ import annotations

from pathlib import Path

from heldout.errors import DownloadError, HeldoutError


class TransientError(DownloadError):
    """A failure worth retrying: a dropped connection, a time-out, an HTTP 5xx or 429."""


class ArchiveError(DownloadError):
    """The bytes do not form a readable .tar.gz (corrupt gzip data or tar headers)."""


class UnsafeMemberError(HeldoutError, ValueError):
    """A member name or type that must not be extracted; the message says why.

    Extraction reports these per member (`ExtractReport.refused`) and goes on; it is an
    error class so that a caller of `safe_relative_path` gets a toolkit error, not a bare
    ValueError.
    """


class ChecksumMismatchError(DownloadError):
    """The MD5 of the received bytes is not the expected one.

    Attributes:
      expected: the MD5 we were told to expect (lowercase hex).
      actual: the MD5 of the bytes received (lowercase hex).
      kept_path: the archive bytes that were checked, where they are now (renamed to
        `<name>.md5-mismatch`, or a local file left as it was); None when no archive was kept
        (extraction without --keep_archive; the files written are listed in
        `<name>.md5-mismatch.files.txt`).
    """

    def __init__(self, message: str, *, expected: str, actual: str, kept_path: Path | None):
        super().__init__(message)
        self.expected = expected
        self.actual = actual
        self.kept_path = kept_path


__all__ = [
    "ArchiveError",
    "ChecksumMismatchError",
    "DownloadError",
    "TransientError",
    "UnsafeMemberError",
]
