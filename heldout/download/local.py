"""Local files a download reads or appends to, opened so that a hostile shared folder cannot
redirect them: links are never followed where we write, and only regular files are read (a
FIFO or /dev/zero would block or never end). Each refusal is a one-line DownloadError.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from heldout.download.errors import DownloadError

_KIND_NAMES = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO")."""
    for test, name in _KIND_NAMES:
        if test(mode):
            return name
    return "not a regular file"


def lstat_or_none(path: Path) -> os.stat_result | None:
    """`os.lstat(path)`, or None when nothing (not even a dangling link) is there."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def refuse_link_or_special(path: Path, what: str) -> os.stat_result | None:
    """The lstat of a file we will write or append to, or None if absent.

    Raises:
      DownloadError: `path` is a symbolic link (dangling or not) or not a regular file;
        nothing is followed, opened or renamed.
    """
    st = lstat_or_none(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise DownloadError(
            f"{path}: is {kind_of(st.st_mode)}, not a regular file; refusing to use it as "
            f"{what} (heldout never follows or replaces links it did not make): move it away"
        )
    return st


def check_regular(path: Path, what: str = "the file to read") -> os.stat_result:
    """`os.stat(path)` (links followed), refusing anything that is not a regular file.

    Raises:
      DownloadError: a FIFO, device, directory or socket (reading one would block or never
        end).
      OSError: it cannot be stat'ed (missing: FileNotFoundError, naming it).
    """
    st = os.stat(path)  # a missing file: the OSError names it
    if not stat.S_ISREG(st.st_mode):
        raise DownloadError(
            f"{path}: is {kind_of(st.st_mode)}, not a regular file; refusing to read it as {what}"
        )
    return st


def open_regular(path: Path, *, follow: bool = True) -> int:
    """A read-only descriptor of `path`, checked to be a regular file once open.

    O_NONBLOCK keeps the open itself from waiting on a FIFO swapped in after a check;
    `follow=False` adds O_NOFOLLOW.

    Raises:
      DownloadError: not a regular file (or a link, with `follow=False`).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        st = lstat_or_none(Path(path))
        if st is not None and not follow and stat.S_ISLNK(st.st_mode):
            raise DownloadError(
                f"{path}: is a symbolic link; refusing to follow it: move it away"
            ) from None
        raise DownloadError(f"{path}: cannot be read ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise DownloadError(
            f"{path}: is {kind_of(st.st_mode)}, not a regular file; refusing to read it"
        )
    os.set_blocking(fd, True)
    return fd


def open_append(path: Path, *, new: bool) -> int:
    """A descriptor appending to `path`, never through a link; `new`: it must not exist yet
    (O_EXCL), so nothing anyone placed there meanwhile is written into.

    Raises:
      DownloadError: `path` is a link, not a regular file, or (with `new`) already there.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    if new:
        flags |= os.O_EXCL
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        st = lstat_or_none(Path(path))
        if st is not None:
            refuse_link_or_special(Path(path), "the partial download")
            if new:
                raise DownloadError(
                    f"{path}: appeared while downloading (another program?); left as it is"
                ) from None
        raise DownloadError(f"{path}: cannot be written ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise DownloadError(f"{path}: is {kind_of(st.st_mode)}, not a regular file; left as it is")
    os.set_blocking(fd, True)
    return fd


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
