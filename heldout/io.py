"""Every file the toolkit writes or reads from elsewhere goes through here.

Writes are atomic and durable: a hidden temporary file beside the target, fsynced, given
the mode a plain `open()` would give it under the current umask (not `mkstemp`'s private
0600), renamed onto the target, and the folder fsynced so the rename survives a crash. A
reader, or a machine that loses power, sees the old file or the complete new one.

`load_npz` is the one loader of `.npz`/`.npy` files: it never unpickles unless asked, and
turns every way such a file can be broken (missing, empty, truncated, not a zip, pickled
object arrays, missing keys) into one `NpzFileError` that names the file.

`FileLock` (fcntl.flock) guards what two processes may write at once; a busy lock is a
`LockBusyError` naming the PIDs that hold it. `check_free_space` refuses early, with the
missing amount, what would otherwise end in `[Errno 28]` hours later.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from heldout.errors import InsufficientSpaceError, LockBusyError, NpzFileError
from heldout.npz_direct import write_stored_npz

PathLike = str | os.PathLike
_ZIP_MAGIC = b"PK"  # a local file header, or the end record of an empty .npz
_NPY_MAGIC = b"\x93NUMPY"

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
    within the 255 bytes file systems allow even when `path`'s own name is that long."""
    name = path.name
    while len(name.encode()) > 200:
        name = name[:-1]
    return f".{name}."


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Opens a hidden temporary file beside `path`; on success it becomes `path`.

    The file is fsynced before the rename and the folder after it; its mode is what a
    plain `open()` gives under the umask. On any exception the temporary is removed and
    `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, file_mode())
        with os.fdopen(handle, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
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
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))
    os.chmod(tmp, dir_mode())
    return tmp


def commit_dir(tmp_dir: PathLike, final: PathLike) -> None:
    """fsyncs a finished temporary folder and renames it to `final` (which must not exist).

    Raises FileExistsError if `final` appeared meanwhile (another process won the race).
    """
    tmp_dir, final = Path(tmp_dir), Path(final)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".probe", dir=path.parent)
    os.close(handle)
    os.unlink(tmp_name)


# --------------------------------------------------------------------------- reading


def load_npz(
    path: PathLike,
    *,
    keys: Iterable[str] | None = None,
    allow_pickle: bool = False,
    error: type[Exception] = NpzFileError,
    what: str = "a numpy .npz file",
) -> dict[str, np.ndarray]:
    """Every array of an `.npz` file (or the one array of an `.npy` under the key `""`).

    Args:
      path: the file.
      keys: arrays that must be present (others are returned too).
      allow_pickle: unpickle object arrays; only when the user asked for it by a flag, for
        a file they trust (pickles run code).
      error: the `HeldoutError` subclass to raise (e.g. `AuxArraysError`).
      what: how the file is described in the error ("a scores file").

    Returns:
      key -> array, fully read into memory (the file is closed).

    Raises:
      `error` (default NpzFileError): the message starts with `path` and says what is wrong.
    """
    source = str(path)
    path = Path(path)
    try:
        if path.is_dir():
            raise error(f"{source}: is a folder, expected {what}")
        if path.stat().st_size == 0:
            raise error(f"{source}: the file is empty (an interrupted write?); expected {what}")
        with open(path, "rb") as f:
            magic = f.read(6)
        if not (magic.startswith(_ZIP_MAGIC) or magic == _NPY_MAGIC):
            # np.load would take any other bytes for a pickle and say so: misleading.
            raise error(f"{source}: not a numpy .npz or .npy file (it starts with {magic!r})")
        loaded = np.load(path, allow_pickle=allow_pickle)
        if isinstance(loaded, np.ndarray):
            arrays = {"": loaded}
        else:
            with loaded as npz:
                arrays = {key: npz[key] for key in npz.files}
    except error:
        raise  # ours, from the checks above: already says what is wrong
    except FileNotFoundError:
        raise error(f"{source}: file not found") from None
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise error(
                f"{source}: holds pickled object arrays, which are refused (unpickling a "
                "file from elsewhere can run code)"
            ) from None
        raise error(f"{source}: cannot read as {what} ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        # BadZipFile/EOFError: truncated; OSError: corrupt members, unreadable file.
        raise error(f"{source}: cannot read as {what} ({type(e).__name__}: {e})") from None
    if keys is not None:
        missing = [key for key in keys if key not in arrays]
        if missing:
            raise error(
                f"{source}: missing arrays {missing} (it has {sorted(arrays)}); expected {what}"
            )
    return arrays


def file_identity(path: PathLike) -> dict:
    """What a stored result records about an input file: absolute path, size, mtime (ns).

    Equal identities mean, in practice, the same bytes; a resume compares them so that a
    result computed from another file is never taken for this one's.
    """
    path = Path(path).absolute()
    stat = path.stat()
    return {"path": str(path), "size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
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


# ------------------------------------------------------------------------ disk space


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_free_space(path: PathLike, needed_bytes: int, what: str) -> None:
    """Raises InsufficientSpaceError unless the file system of `path` has `needed_bytes`.

    Args:
      path: where the data will go (need not exist yet: its nearest existing parent is
        asked).
      needed_bytes: what will be written.
      what: what is being written, for the message ("cifar10-inception.tar.gz").
    """
    where = _existing_parent(Path(path))
    free = shutil.disk_usage(where).free
    if free < needed_bytes:
        raise InsufficientSpaceError(
            f"{path}: {what} needs {format_bytes(needed_bytes)} but only {format_bytes(free)} "
            f"is free on that file system ({format_bytes(needed_bytes - free)} missing); "
            "free some space or choose another output folder"
        )
