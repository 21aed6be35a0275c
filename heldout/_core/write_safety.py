"""What every write of the toolkit checks first, so that a hostile or careless shared disk
cannot turn it against someone's files: no symbolic link followed, no file in the place of
an output folder, and a failed write (full disk, file-size limit) said in one line that
names the file and the cause.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from heldout.errors import StaleResultError, UnsafeWriteError

PathLike = str | os.PathLike


def symlink_refused(path: PathLike) -> UnsafeWriteError:
    """The one-line error for a symbolic link where the toolkit would write a file."""
    return UnsafeWriteError(f"{path} is a symbolic link; refusing to write through it")


def open_nofollow(path: PathLike, flags: int, mode: int) -> int:
    """`os.open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode)` for a file the toolkit writes.

    Why: opening a planted link `OUT/.x.lock -> ~/victim` with O_CREAT would truncate or
    create the victim. O_NOFOLLOW covers the last component only: folders on the way may
    be links (an output folder on another disk), which the person asking chose.

    Raises:
      UnsafeWriteError: `path` is a symbolic link (dangling or not), or not a regular file.
      OSError: any other failure to open.
    """
    not_regular = UnsafeWriteError(f"{path} is not a regular file; refusing to write to it")
    try:  # O_NONBLOCK: a FIFO planted there must not hang the open
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as error:
        if error.errno == errno.ELOOP or (error.errno == errno.EEXIST and os.path.islink(path)):
            raise symlink_refused(path) from None
        if error.errno == errno.ENXIO:  # a FIFO without a reader, a socket
            raise not_regular from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise not_regular
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_dir(path: PathLike) -> Path:
    """Creates folder `path` and its parents where missing (the umask's mode).

    Returns:
      `path` as a Path.

    Raises:
      UnsafeWriteError: `path`, or a folder above it, exists and is not a folder (the
        message names it, not "[Errno 17] File exists").
      OSError: any other failure (permissions), naming the folder.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        for folder in (path, *path.parents):
            if os.path.lexists(folder):
                if not folder.is_dir():
                    raise UnsafeWriteError(f"{folder} exists and is not a folder") from None
                break
        raise
    return path


# Write failures whose cause is the disk or a limit, not the data: said with the file.
WRITE_ERRNOS = frozenset(
    code
    for code in (
        errno.ENOSPC,
        errno.EFBIG,
        getattr(errno, "EDQUOT", None),
        errno.EIO,
        errno.EROFS,
    )
    if code is not None
)


def is_write_failure(error: BaseException, own: tuple[str, ...] = ()) -> bool:
    """Whether `error` is a failure of writing itself (full disk, quota, size limit, I/O
    error) about no file, or about one of `own` (the writer's temporaries)."""
    return (
        isinstance(error, OSError)
        and not isinstance(error, UnsafeWriteError)
        and error.errno in WRITE_ERRNOS
        and (error.filename is None or os.fsdecode(error.filename) in own)
    )


def write_failure(path: PathLike, error: OSError, left_behind: bool = False) -> UnsafeWriteError:
    """The one-line error for a write of `path` that failed with `error`.

    E.g. "could not write OUT/scores.npz: no space left on device (errno 28); nothing was
    left behind". The result keeps `error.errno` for callers that test it.
    """
    cause = os.strerror(error.errno) if error.errno is not None else str(error)
    cause = cause[:1].lower() + cause[1:]
    kept = "a partial file may remain" if left_behind else "nothing was left behind"
    failure = UnsafeWriteError(f"could not write {path}: {cause} (errno {error.errno}); {kept}")
    failure.errno = error.errno
    return failure


def check_replaceable_dir(folder: PathLike, names, what: str) -> None:
    """Refuses, before any work, an output folder that an export may not fill: it may be
    missing, empty, or hold only regular files named in `names` (an earlier `what`, to be
    replaced).

    Raises:
      UnsafeWriteError: it is a symbolic link.
      StaleResultError: it is a file, or holds anything else (named).
    """
    folder = Path(folder)
    if folder.is_symlink():
        raise symlink_refused(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise StaleResultError(f"{folder}: exists and is not a folder; choose an output folder")
    other = sorted(
        p.name for p in folder.iterdir() if p.name not in names or p.is_symlink() or not p.is_file()
    )
    if other:
        raise StaleResultError(
            f"{folder}: holds {other[:5]}, not only an earlier {what}; remove them or choose "
            "another output folder"
        )
