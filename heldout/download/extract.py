"""Safe extraction of a tar stream, member by member, as the bytes arrive.

Only regular files and directories are written, each under a temporary name, fsynced and
renamed when complete; unsafe members are refused and reported, never written, and
existing files are never overwritten unless asked. The rules: `extract_tar_stream`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import os
import re
import stat
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from heldout._core.atomic import fsync_dir
from heldout.download.commit import Committer
from heldout.download.errors import ArchiveError, UnsafeMemberError

_COPY_BYTES = 1 << 20
_TMP_SUFFIX = ".heldout-tmp"
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
        return target

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

    A member is refused (reported, not written) when its name is absolute or contains `..`,
    when it is a link, a device, a FIFO or a sparse file, or when its destination would resolve
    outside the output directory (e.g. through a symbolic link already there). Refusals never
    stop the extraction: the caller gets the list and decides (the CLI exits non-zero).

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
    tmp = _temporary_name(target)
    if os.path.lexists(tmp):  # left by an interrupted run: ours, incomplete
        os.unlink(tmp)
    # The kernel takes the umask off: the mode a plain `open()` gives (0o777 for members that
    # are executable), never the archive's own bits (no setuid, no world-writable files).
    mode = 0o777 if member.mode & 0o111 else 0o666
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    out = os.fdopen(fd, "wb")
    try:
        source = tar.extractfile(member)
        while chunk := source.read(_COPY_BYTES):
            out.write(chunk)
        out.flush()
        with contextlib.suppress(OverflowError, OSError, ValueError):
            # A crafted header's mtime can lie outside what the OS accepts; the bytes matter.
            os.utime(out.fileno(), (member.mtime, member.mtime))
    except BaseException:
        out.close()
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    report.written.append(relative)
    report.bytes_written += member.size

    def undo() -> None:
        report.written.remove(relative)
        report.bytes_written -= member.size

    # fsync (the data is on disk before its final name is), then the rename: in a worker.
    committer.submit(out, tmp, target, undo)


def _temporary_name(target: str) -> str:
    """A hidden name beside `target`, short enough for the file system even when the
    member's own name already uses the whole 255 bytes a name may have."""
    directory, name = os.path.split(target)
    tmp = "." + name + _TMP_SUFFIX
    if len(os.fsencode(tmp)) > 255:
        tmp = "." + hashlib.sha256(os.fsencode(name)).hexdigest()[:32] + _TMP_SUFFIX
    return os.path.join(directory, tmp)


def _same_content(tar, member, path: str) -> bool:
    source = tar.extractfile(member)
    with open(path, "rb") as existing:
        while chunk := source.read(_COPY_BYTES):
            if existing.read(len(chunk)) != chunk:
                return False
    return True
