"""Safe extraction of a tar stream, member by member, as the bytes arrive.

Only regular files and directories are written, each as a temporary in a private folder,
checked, fsynced and renamed when complete; unsafe members are refused and reported, never
written, and existing files are never overwritten unless asked. The rules: `extract_tar_stream`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import os
import re
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from heldout._core.atomic import fsync_dir
from heldout._core.system import check_free_space
from heldout.download.commit import Committer, remove_quietly
from heldout.download.errors import ArchiveError, DownloadError, UnsafeMemberError
from heldout.download.temporaries import Temporaries, check_written

_COPY_BYTES = 1 << 20
_KINDS = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}


@dataclasses.dataclass
class ExtractReport:
    """What an extraction did.

    Attributes:
      written: relative paths of the files written by this run, in archive order (while
        extracting, also the last few still being made durable; all are in place once
        `extract_tar_stream` has returned or raised).
      bytes_written: their total size.
      already_present: files skipped because an identical file was already there.
      not_selected: members skipped because no `only` pattern matched them.
      refused: (member name, reason) for each member refused as unsafe.
      conflicts: (relative path, reason) for each member not written because something
        different is already at its destination.
    """

    written: list[str] = dataclasses.field(default_factory=list)
    bytes_written: int = 0
    already_present: int = 0
    not_selected: int = 0
    refused: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    conflicts: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def selected(self) -> int:
        """Members that matched the selection and were safe (written, present or in conflict)."""
        return len(self.written) + self.already_present + len(self.conflicts)


def safe_relative_path(name: str) -> str:
    """A member name as a normalized relative path ("./a//b" -> "a/b"; "./" -> "").

    Raises UnsafeMemberError for absolute paths and names with a `..` component.
    """
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise UnsafeMemberError("absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeMemberError("path contains '..'")
    return "/".join(parts)


def matches(path: str, patterns: Sequence[str] | None) -> bool:
    """Whether `path` matches one of the glob `patterns` (None: everything). `*` spans `/`."""
    return patterns is None or any(fnmatch.fnmatchcase(path, p) for p in patterns)


class _Destination:
    """Maps relative paths to paths under the output directory, refusing escapes.

    A destination is safe when its parent folder resolves inside the output directory; an
    existing symbolic link at the destination itself is never followed (it is a conflict, or
    replaced as a link by `os.replace`). Parents already checked or created are remembered:
    with thousands of files in a few folders this saves most of the file-system calls.
    """

    def __init__(self, root: Path):
        self.root = str(root)
        self.temporaries = Temporaries(self.root)
        self._space_left = 0  # free bytes at the last check, less what was written since
        self._real_root = os.path.realpath(self.root)
        self._checked: set[str] = set()
        self._made: set[str] = set()
        self._unsynced: set[str] = set()  # folders with entries not yet fsynced
        self._last_folder: str | None = None

    def path(self, relative: str) -> str:
        target = os.path.join(self.root, *relative.split("/"))
        parent = os.path.dirname(target)
        if parent not in self._checked:
            real = os.path.realpath(parent)
            if os.path.commonpath([self._real_root, real]) != self._real_root:
                raise UnsafeMemberError(
                    f"would be written outside the output directory (into {real}, through "
                    "a symbolic link already there)"
                )
            self._checked.add(parent)
        self.temporaries.refuse_inside(target)
        return target

    def reserve(self, target: str, relative: str, size: int) -> None:
        """Refuses (InsufficientSpaceError) a member whose declared size is more than the
        free space, before a byte of it is written; asks the file system only when what was
        free at the last check, less what was written since, might not be enough."""
        if size > self._space_left:
            folder = os.path.dirname(target)
            check_free_space(folder, size, f"extracting {relative} (its declared size)")
            self._space_left = shutil.disk_usage(folder).free
        self._space_left -= size

    def make_dir(self, path: str) -> None:
        if path not in self._made:
            os.makedirs(path, exist_ok=True)
            self._made.add(path)
            # The new folders' entries live in their parents: those need an fsync too.
            folder = path
            while folder != self.root and folder.startswith(self.root):
                folder = os.path.dirname(folder)
                self._unsynced.add(folder)

    def committed(self, path: str) -> None:
        """Records a file renamed into place; fsyncs finished folders when the stream
        moves on to another one (tar streams come folder by folder)."""
        folder = os.path.dirname(path)
        if folder != self._last_folder:
            self.sync()
            self._last_folder = folder
        self._unsynced.add(folder)

    def sync(self) -> None:
        """fsyncs every folder that got a new entry, making those renames durable."""
        while self._unsynced:
            fsync_dir(self._unsynced.pop())


def extract_tar_stream(
    fileobj: BinaryIO,
    output_dir: Path,
    *,
    only: Sequence[str] | None = None,
    overwrite: bool = False,
    on_member: Callable[[str, ExtractReport], None] | None = None,
    report: ExtractReport | None = None,
) -> ExtractReport:
    """Extracts an uncompressed tar stream read sequentially from `fileobj` into `output_dir`.

    Args:
      fileobj: the tar bytes (e.g. a `ChunkReader` over inflated chunks); read once, in order.
      output_dir: where files go; created if missing.
      only: glob patterns over normalized member paths (`*/aux_arrays.npz`); members matching
        none are read and discarded. None extracts everything.
      overwrite: replace existing files that differ instead of reporting a conflict.
      on_member: called after each selected member with its path and the report so far.
      report: the report to fill in (pass one to know what was written if this raises).

    Raises:
      ArchiveError: the tar data is unreadable (bad header, truncated).
      InsufficientSpaceError: a member declares more bytes than the disk has free (checked
        before any of its bytes is written).
      DownloadError: writing a file failed (a full disk: its temporary is removed), or a
        file was changed by another program before its rename.

    A member is refused (reported, not written) when its name is absolute or contains `..`,
    when it is a link, a device, a FIFO or a sparse file (GNU type, or PAX `GNU.sparse.*`
    records), or when its destination would resolve outside the output directory (e.g.
    through a symbolic link already there) or into this extraction's private folder.
    Refusals never stop the extraction: the caller gets the list and decides (the CLI exits
    non-zero).

    Each file is written under a numbered name (O_EXCL) in a private folder that
    `tempfile.mkdtemp` makes inside the output tree (`.heldout-extract-*`, removed at the
    end), so no member and no other extraction can share a temporary's name; its size and
    CRC-32, read back, must match what was streamed before it is renamed.

    The fsync and rename run in worker threads (`heldout.download.commit`). Folders that
    received new entries are fsynced when the stream moves on to another folder and at the
    end (a rename lost in a crash only means the file is extracted again by the next run,
    which never trusts a file it has not compared). Files and folders get the mode a plain
    `open()` / `mkdir()` gives under the umask (executable members: `0o777` less the umask);
    the archive's own modes and owners are not applied. Callers that may run concurrently on
    one output folder hold a lock (`transfer.download` does); this function takes none.

    An existing file with the same bytes as the member counts as already present (re-running
    an interrupted extraction is cheap on disk writes); one that differs is reported as a
    conflict and left as it is, unless `overwrite=True`.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    destination = _Destination(output_dir)
    report = ExtractReport() if report is None else report
    try:
        with (
            Committer(destination.committed) as committer,
            tarfile.open(fileobj=fileobj, mode="r|", bufsize=64 << 10) as tar,
        ):
            for member in tar:
                _extract_member(
                    tar, member, destination, committer, only, overwrite, report, on_member
                )
    except tarfile.TarError as e:
        raise ArchiveError(f"the tar data is unreadable: {e}.") from None
    finally:
        destination.sync()  # what the report lists as written survives a crash
        destination.temporaries.close()  # every file is renamed or removed by now
    return report


def _extract_member(
    tar, member, destination, committer, only, overwrite, report, on_member
) -> None:
    try:
        relative = safe_relative_path(member.name)
    except UnsafeMemberError as e:
        if matches(member.name, only):
            report.refused.append((member.name, str(e)))
        else:
            report.not_selected += 1
        return
    if not relative:  # the archive's root entry ("./")
        return
    if not matches(relative, only):
        report.not_selected += 1
        return
    try:
        if member.type in _KINDS:
            raise UnsafeMemberError(f"is {_KINDS[member.type]}")
        if _is_sparse(member):
            # Its holes would be written as zeros: a few hundred bytes of archive could fill
            # a disk (the declared size is what matters, and it is refused, not written).
            raise UnsafeMemberError(
                f"is a sparse file (declared size {member.size} bytes); sparse members are refused"
            )
        if not (member.isreg() or member.isdir()):
            raise UnsafeMemberError(f"has unsupported type {member.type!r}")
        target = destination.path(relative)
    except UnsafeMemberError as e:
        report.refused.append((member.name, str(e)))
        return
    try:
        committer.wait_for(target)
        existing = _lstat(target)
        if member.isdir():
            if existing is None:
                destination.make_dir(target)
            elif not stat.S_ISDIR(existing.st_mode):
                report.conflicts.append((relative, "exists and is not a directory"))
            return
        _extract_file(
            tar, member, relative, target, existing, destination, committer, overwrite, report
        )
    except (NotADirectoryError, FileExistsError):  # a parent path is a file
        report.conflicts.append((relative, "a parent path exists and is not a directory"))
    if on_member is not None:
        on_member(relative, report)


def _is_sparse(member: tarfile.TarInfo) -> bool:
    """GNU sparse members, as a GNU type or as PAX `GNU.sparse.*` records (any version)."""
    return member.issparse() or any(key.startswith("GNU.sparse.") for key in member.pax_headers)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _extract_file(
    tar, member, relative, target, existing, destination, committer, overwrite, report
):
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode):
            report.conflicts.append((relative, "exists and is a directory"))
            return
        if not overwrite:
            if stat.S_ISLNK(existing.st_mode):
                reason = "exists and is a symbolic link (overwrite=True replaces the link)"
            elif not stat.S_ISREG(existing.st_mode):
                # A FIFO or device there: never opened (reading a FIFO would block forever).
                reason = "exists and is not a regular file (overwrite=True replaces it)"
            elif existing.st_size == member.size and _same_content(tar, member, target):
                report.already_present += 1
                return
            else:
                reason = "exists with different content (overwrite=True replaces it)"
            report.conflicts.append((relative, reason))
            return
    destination.make_dir(os.path.dirname(target))
    destination.reserve(target, relative, member.size)
    # The kernel takes the umask off: the mode a plain `open()` gives (0o777 for members that
    # are executable), never the archive's own bits (no setuid, no world-writable files).
    fd, tmp = destination.temporaries.create(target, 0o777 if member.mode & 0o111 else 0o666)
    out = os.fdopen(fd, "wb")
    crc = size = 0
    try:
        source = tar.extractfile(member)
        while chunk := source.read(_COPY_BYTES):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        with contextlib.suppress(OverflowError, OSError, ValueError):
            # A crafted header's mtime can lie outside what the OS accepts; the bytes matter.
            os.utime(out.fileno(), (member.mtime, member.mtime))
    except BaseException as e:
        with contextlib.suppress(OSError):  # its flush fails again after a failed write
            out.close()
        remove_quietly(tmp)
        if isinstance(e, OSError):  # a full disk, a file-size limit, an I/O error
            raise DownloadError(
                f"{target}: writing failed ({e.strerror or e}); its temporary was removed"
            ) from None
        raise
    report.written.append(relative)
    report.bytes_written += member.size

    def undo() -> None:
        report.written.remove(relative)
        report.bytes_written -= member.size

    # fsync, check what is in the file, then the rename: in a worker.
    check = functools.partial(check_written, tmp=tmp, target=target, size=size, crc=crc)
    committer.submit(out, tmp, target, undo, check)


def _same_content(tar, member, path: str) -> bool:
    source = tar.extractfile(member)
    with open(path, "rb") as existing:
        while chunk := source.read(_COPY_BYTES):
            if existing.read(len(chunk)) != chunk:
                return False
    return True
