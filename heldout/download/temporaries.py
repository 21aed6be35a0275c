"""Where an extraction writes its files before renaming them into place: a private folder
per file system, made by `tempfile.mkdtemp` inside the output tree, so that no tar member and
no other process extracting into the same folder can have (or take) a temporary's name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zlib

from heldout.download.errors import UnsafeMemberError
from heldout.errors import DownloadError

PRIVATE_PREFIX = ".heldout-extract-"
_VERIFY_BYTES = 1 << 20


class Temporaries:
    """Creates temporaries (O_EXCL, never through a link) and removes what is left.

    One private folder per file system under `root` (a rename cannot cross file systems):
    in `root` itself, or in the first target folder seen on another file system.
    Temporaries are numbered, so two members never share one; `close()` removes the
    numbered files still there and the folders, and nothing else.
    """

    def __init__(self, root: str):
        self.root = root
        self._by_device: dict[int, str] = {}
        self._by_parent: dict[str, str] = {}
        self._count = 0

    def refuse_inside(self, target: str) -> None:
        """Raises UnsafeMemberError when `target` is one of our folders or inside one."""
        for folder in self._by_device.values():
            if target == folder or target.startswith(folder + os.sep):
                raise UnsafeMemberError(
                    "is inside this extraction's private temporary folder "
                    f"{os.path.basename(folder)}"
                )

    def _folder_for(self, parent: str) -> str:
        folder = self._by_parent.get(parent)
        if folder is None:
            device = os.stat(parent).st_dev
            folder = self._by_device.get(device)
            if folder is None:
                # At the root when it is on that file system: one folder, easy to find.
                where = self.root if os.stat(self.root).st_dev == device else parent
                folder = tempfile.mkdtemp(prefix=PRIVATE_PREFIX, dir=where)
                self._by_device[device] = folder
            self._by_parent[parent] = folder
        return folder

    def create(self, target: str, mode: int) -> tuple[int, str]:
        """A new, empty temporary on the file system of `target`'s folder: (fd, path); open
        for reading too, so that `check_written` can read it back."""
        folder = self._folder_for(os.path.dirname(target))
        self._count += 1
        tmp = os.path.join(folder, str(self._count))
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(tmp, flags, mode), tmp

    def close(self) -> None:
        """Removes the temporaries still there (an error stopped them) and the folders."""
        for folder in self._by_device.values():
            with contextlib.suppress(OSError):
                for entry in os.scandir(folder):
                    if entry.name.isdigit() and int(entry.name) <= self._count:
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        self._by_device.clear()
        self._by_parent.clear()


def check_written(fd: int, tmp: str, target: str, size: int, crc: int) -> None:
    """Checks, before the rename, that the temporary at `tmp` is the file we wrote (`fd`) and
    holds what was streamed: `size` bytes whose CRC-32 is `crc`, read back from the file.

    Raises:
      DownloadError: it is not (another program wrote into it or replaced it).
    """
    st = os.fstat(fd)
    at_name = os.lstat(tmp)
    problem = None
    if (st.st_dev, st.st_ino) != (at_name.st_dev, at_name.st_ino):
        problem = "its temporary was replaced by another file"
    elif st.st_size != size:
        problem = f"it holds {st.st_size} bytes, not the {size} streamed"
    else:
        actual, offset = 0, 0
        while offset < size:
            chunk = os.pread(fd, min(_VERIFY_BYTES, size - offset), offset)
            if not chunk:
                break
            actual = zlib.crc32(chunk, actual)
            offset += len(chunk)
        if actual != crc:
            problem = "its bytes differ from those streamed"
    if problem is not None:
        raise DownloadError(
            f"{target}: not written: {problem} (another program wrote into it?); "
            "the temporary was removed"
        )
