"""The errors a download can end with; each message says what happened and where the data is."""

from __future__ import annotations

from pathlib import Path

from heldout.errors import DownloadError  # noqa: F401 - the root of download errors




class TransientError(DownloadError):
    """A failure worth retrying: a dropped connection, a time-out, an HTTP 5xx or 429."""


class ArchiveError(DownloadError):
    """The bytes do not form a readable .tar.gz (corrupt gzip data or tar headers)."""


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
