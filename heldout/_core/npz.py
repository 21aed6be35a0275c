"""The one loader of `.npz`/`.npy` files: it never unpickles unless asked, and turns every
way such a file can be broken into one `NpzFileError` that names the file. What a file
declares (each member's size, each array's shape) is checked against a bound before
anything is allocated or inflated, so a hostile header cannot exhaust memory.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from collections.abc import Iterable
from typing import BinaryIO

import numpy as np

from heldout._core.atomic import PathLike
from heldout._core.system import memory_available
from heldout.errors import NpzFileError

# A local file header, or the end record of an empty .npz.
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
# Members numpy writes (stored or deflated); others (bzip2, lzma) are not inflated in bounded
# steps by zipfile, and no .npz writer uses them.
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


# --------------------------------------------------------------------------- reading


def load_npz(
    path: PathLike,
    *,
    keys: Iterable[str] | None = None,
    allow_pickle: bool = False,
    error: type[Exception] = NpzFileError,
    what: str = "a numpy .npz file",
    max_bytes: int | None = None,
) -> dict[str, np.ndarray]:
    """Every array of an `.npz` file (or the one array of an `.npy` under the key `""`).

    Args:
      path: the file.
      keys: arrays that must be present (others are returned too).
      allow_pickle: unpickle object arrays; only when the user asked for it by a flag, for
        a file they trust (pickles run code).
      error: the `HeldoutError` subclass to raise (e.g. `AuxArraysError`).
      what: how the file is described in the error ("a scores file").
      max_bytes: the most bytes its arrays may declare in all (e.g. what the split sizes
        allow); None: the memory available. Checked before anything is inflated.

    Returns:
      key -> array, fully read into memory (the file is closed).

    Raises:
      `error` (default NpzFileError): the message starts with `path` and says what is wrong.
    """
    source = str(path)
    try:
        with _open_regular_file(path, error, what) as f:
            magic = f.read(6)
            if magic[:2] == b"PK" and magic[:4] not in _ZIP_MAGICS:
                raise error(f"{source}: not a valid .npz (zip) file (it starts with {magic!r})")
            if magic[:4] in _ZIP_MAGICS:
                _check_members(f, max_bytes)
            elif magic == _NPY_MAGIC:
                f.seek(0)
                _check_declared(f, os.fstat(f.fileno()).st_size, "the array", _bound(max_bytes))
            else:
                # np.load would take any other bytes for a pickle and say so: misleading.
                raise error(f"{source}: not a numpy .npz or .npy file (it starts with {magic!r})")
            f.seek(0)
            loaded = np.load(f, allow_pickle=allow_pickle)
            if isinstance(loaded, np.ndarray):
                arrays = {"": loaded}
            else:
                with loaded as npz:
                    arrays = {key: npz[key] for key in npz.files}
    except error:
        raise  # ours, from the checks above: already says what is wrong
    except _Declared as e:
        raise error(
            f"{source}: {e}; refused before reading it (a corrupt or hostile file)"
        ) from None
    except zipfile.BadZipFile as e:  # truncated, or not a zip archive past its magic
        raise error(f"{source}: cannot read as {what}: not a valid .npz (zip) file ({e})") from None
    except FileNotFoundError:
        raise error(f"{source}: file not found") from None
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise error(
                f"{source}: holds pickled object arrays, which are refused (unpickling a "
                "file from elsewhere can run code)"
            ) from None
        raise error(f"{source}: cannot read as {what} ({e})") from None
    except (OSError, EOFError, KeyError, zlib.error, NotImplementedError) as e:
        # EOFError: truncated; OSError: corrupt members, unreadable file; zlib.error:
        # corrupt deflated data; NotImplementedError: a zip version zipfile cannot read.
        raise error(f"{source}: cannot read as {what} ({type(e).__name__}: {e})") from None
    if keys is not None:
        missing = [key for key in keys if key not in arrays]
        if missing:
            raise error(
                f"{source}: missing arrays {missing} (it has {sorted(arrays)}); expected {what}"
            )
    return arrays


def _open_regular_file(path: PathLike, error: type[Exception], what: str) -> BinaryIO:
    """The file opened for reading, refused unless it is a non-empty regular file.

    Opened without blocking and checked on the open descriptor: a FIFO would hang the
    open or the read, a device (`/dev/zero`) never ends, and a check by name before the
    open could be raced.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{path}: is a folder, expected {what}")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: not a regular file (a FIFO, device or socket); expected {what}")
        if info.st_size == 0:
            raise error(f"{path}: the file is empty (an interrupted write?); expected {what}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class _Declared(Exception):
    """What a file declares does not fit what it holds or the bound (internal)."""


class _Bound(int):
    """A byte bound that says where it comes from, for messages."""

    what: str

    def __new__(cls, value: int, what: str) -> _Bound:
        bound = super().__new__(cls, value)
        bound.what = what
        return bound

    def __str__(self) -> str:
        return f"the {int(self)} bytes {self.what}"


def _bound(max_bytes: int | None) -> _Bound | None:
    """`max_bytes` when given, else the memory available (None where unknown)."""
    if max_bytes is not None:
        return _Bound(max_bytes, "the file may hold here")
    available = memory_available()
    return None if available is None else _Bound(available, "of memory available")


def _check_members(f: BinaryIO, max_bytes: int | None) -> None:
    """Raises `_Declared` unless every member's declared sizes fit before inflating it."""
    bound = _bound(max_bytes)
    total = 0
    with zipfile.ZipFile(f) as archive:
        for info in archive.infolist():
            if info.flag_bits & 0x1:  # zipfile would raise RuntimeError asking for a password
                raise _Declared(f"{info.filename} is encrypted")
            if info.compress_type not in _METHODS:
                raise _Declared(f"{info.filename} is compressed with method {info.compress_type}")
            total += info.file_size
            if bound is not None and total > bound:
                raise _Declared(
                    f"{info.filename} declares {info.file_size} bytes uncompressed, more than "
                    f"{bound}"
                )
            if info.filename.endswith(".npy"):
                with archive.open(info) as member:
                    # Its size is within the bound already: check it holds what it says.
                    _check_declared(member, info.file_size, info.filename, None)


def _check_declared(stream: BinaryIO, stored: int, name: str, bound: int | None) -> None:
    """Raises `_Declared` when an array header declares more bytes than the `stored` bytes
    hold, or than `bound` (None: no bound); reads the header alone (np.load then says what
    else is wrong)."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):  # 3.0 differs in the text's encoding only
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            return
    except (ValueError, EOFError):
        return  # not a header numpy reads: np.load names the problem
    if dtype.hasobject:
        return  # pickled: refused, or unpickled when allowed; no size to check
    declared = math.prod(shape) * dtype.itemsize
    stored -= stream.tell()  # the header's own bytes
    if bound is not None and declared > bound:
        raise _Declared(
            f"{name} declares shape {shape} of {dtype} ({declared} bytes), more than {bound}"
        )
    if declared > stored:
        raise _Declared(
            f"{name} declares shape {shape} of {dtype} ({declared} bytes) but holds {stored} bytes"
        )
