"""Atomic, durable writes: a hidden temporary beside the target (created new, never
through a link), fsynced, given the mode a plain `open()` would give it under the umask,
renamed onto the target, and the folder fsynced, so a reader (or a machine that loses
power) sees the old file or the new one; a failed write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from heldout._core.npz_direct_write import write_stored_npz
from heldout._core.write_safety import (
    WRITE_ERRNOS,
    ensure_dir,
    is_write_failure,
    symlink_refused,
    write_failure,
)

PathLike = str | os.PathLike

_umask_lock = threading.Lock()


# ------------------------------------------------------------------------------ modes


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:  # os.umask can only be read by setting it: keep the window closed
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode `open(path, "w")` would give a new file under the current umask."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode `os.mkdir(path)` would give a new folder under the current umask."""
    return 0o777 & ~current_umask()


# -------------------------------------------------------------------------- durability


def fsync_dir(path: PathLike) -> None:
    """Makes a rename or a new entry in folder `path` durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


def fsync_file(path: PathLike) -> None:
    """Flushes one file's data to disk (for files written by other libraries, e.g. TF)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: PathLike) -> None:
    """fsyncs every file and folder below `root` (before renaming the tree into place)."""
    root = Path(root)
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                fsync_file(path)
        fsync_dir(folder)


# ------------------------------------------------------------------------ atomic writes


def _temp_prefix(path: Path) -> str:
    """`.<name>.` for the temporary beside `path`, cut so that the temporary's name stays
    within the 255 bytes file systems allow even when `path`'s own name is that long.

    Names are counted in the bytes the file system sees (`os.fsencode`): a name that is
    not UTF-8 (bytes kept as surrogates) is as writable as any other.
    """
    name = path.name
    while len(os.fsencode(name)) > 200:
        name = name[:-1]
    return f".{name}."


def _make_temp(path: Path, suffix: str) -> tuple[int, str]:
    """A new temporary beside `path` (`tempfile.mkstemp`: O_CREAT|O_EXCL|O_NOFOLLOW, so
    never a file someone planted or a link's target), its folder created if missing."""
    ensure_dir(path.parent)
    try:
        return tempfile.mkstemp(prefix=_temp_prefix(path), suffix=suffix, dir=path.parent)
    except OSError as error:
        if error.errno in WRITE_ERRNOS:
            raise write_failure(path, error) from error
        raise


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Opens a hidden temporary file beside `path`; on success it becomes `path`.

    The file is fsynced before the rename and the folder after it; its mode is what a
    plain `open()` gives under the umask. On any exception the temporary is removed and
    `path` is left as it was.

    A symbolic link at `path` is replaced by the new file, not followed: `rename` acts on
    the link itself, so whatever it points to is never written (nor is a planted link
    ever opened). Replacing it is the safe outcome; refusing would let anyone who can
    plant a link stop every later write.

    Raises:
      UnsafeWriteError: the folder is a file, or the write failed for want of space or a
        size limit (the message names `path` and the cause; the temporary is removed).
    """
    path = Path(path)
    handle, tmp_name = _make_temp(path, ".tmp")
    try:
        os.fchmod(handle, file_mode())
        with os.fdopen(handle, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        Path(tmp_name).unlink(missing_ok=True)
        if is_write_failure(error, (tmp_name,)):
            raise write_failure(path, error) from error
        raise
    fsync_dir(path.parent)


def write_npz_atomic(path: PathLike, arrays: dict[str, np.ndarray]) -> None:
    """`np.savez` (uncompressed: the arrays are mostly random bits) written atomically."""
    with atomic_open(path, "wb") as f:
        write_stored_npz(f, arrays)  # what np.savez writes, without its copies


def write_text_atomic(path: PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json_atomic(path: PathLike, value: Any) -> None:
    """JSON (indented, no NaN) written atomically."""
    write_text_atomic(path, json.dumps(value, indent=2, allow_nan=False) + "\n")


def make_temp_dir(parent: PathLike, prefix: str) -> Path:
    """A new hidden `<prefix>*.tmp` folder in `parent` with the umask's folder mode.

    `tempfile.mkdtemp` makes it 0700; a run folder renamed from it would stay private.
    """
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=ensure_dir(parent)))
    os.chmod(tmp, dir_mode())
    return tmp


def commit_dir(tmp_dir: PathLike, final: PathLike) -> None:
    """fsyncs a finished temporary folder and renames it to `final` (which must not exist).

    Raises FileExistsError if `final` appeared meanwhile (another process won the race),
    UnsafeWriteError if `final` is a symbolic link.
    """
    tmp_dir, final = Path(tmp_dir), Path(final)
    if final.is_symlink():  # rename would fail with "Not a directory": say what is there
        raise symlink_refused(final)
    fsync_tree(tmp_dir)
    try:
        os.rename(tmp_dir, final)  # fails on an existing non-empty folder: never replaces
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(f"{final}: already exists; not replacing it") from None
        raise
    fsync_dir(final.parent)


def probe_writable(path: PathLike) -> None:
    """Raises the OSError a later write of `path` would raise (folder missing and not
    creatable, not writable, a file in the way), by creating and removing a temporary
    beside it: cheap insurance before hours of work whose result would be lost."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file to write", str(path))
    for parent in (path.parent, *path.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(
                    errno.ENOTDIR, f"not a folder, so {path} cannot be written", str(parent)
                )
            break
    handle, tmp_name = _make_temp(path, ".probe")
    os.close(handle)
    os.unlink(tmp_name)


def replace_dir(tmp_dir: PathLike, final: PathLike) -> None:
    """Commits a finished temporary folder as `final`, replacing a folder already there
    (an earlier export): the old one is set aside, the new one renamed in, the old one
    removed; a failed rename puts the old one back.

    Raises:
      UnsafeWriteError: `final` is a symbolic link.
    """
    tmp_dir, final = Path(tmp_dir), Path(final)
    old = None
    if final.is_dir() and not final.is_symlink():
        if any(final.iterdir()):
            old = make_temp_dir(final.parent, f".{final.name}-old-")
            os.replace(final, old)
        else:
            final.rmdir()
    try:
        commit_dir(tmp_dir, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
