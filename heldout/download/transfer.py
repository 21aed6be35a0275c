"""Download one archive: MD5 while streaming, resume, keep every byte, extract in one pass.

Local bytes are reused before the network (a complete archive, or a `.part` plus a range
request); bytes that fail a check are kept aside, never deleted. The files `download`
leaves and how it guards shared folders are listed in its docstring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import os
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from heldout._core.locks import FileLock
from heldout._core.system import check_free_space, format_bytes
from heldout._core.write_safety import ensure_dir
from heldout.download.aside import durable_rename, mismatch, unreadable
from heldout.download.checksum import ProgressCallback, Reporter, md5_of, normalize_md5
from heldout.download.errors import ArchiveError, ChecksumMismatchError, DownloadError
from heldout.download.extract import ExtractReport, extract_tar_stream
from heldout.download.local import (
    check_regular,
    lstat_or_none,
    open_append,
    refuse_link_or_special,
)
from heldout.download.pipeline import ChunkReader, gunzip, threaded
from heldout.download.resume import RetryPolicy, call_with_retries, file_chunks, remote_chunks
from heldout.download.sources import DEFAULT_TIMEOUT_S, RemoteInfo, Source, open_source
from heldout.errors import UsageError

PART_SUFFIX = ".part"
LOCK_SUFFIX = ".lock"  # the lock file is `.<name>.lock`
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
DEFAULT_RETRY = RetryPolicy()


@dataclasses.dataclass(frozen=True)
class DownloadResult:
    """What `download` did.

    Attributes:
      url: where the bytes came from.
      md5: the verified MD5 (lowercase hex).
      size: archive size in bytes.
      bytes_downloaded: bytes received over the network in this run.
      bytes_reused: bytes read from a local `<name>` or `<name>.part` instead.
      archive_path: the verified archive on disk, or None when extracted without keeping it.
      extract: the extraction report, when extracting.
      retries: reconnections after drops or server errors.
      seconds: wall time.
    """

    url: str
    md5: str
    size: int
    bytes_downloaded: int
    bytes_reused: int
    archive_path: Path | None
    extract: ExtractReport | None
    retries: int
    seconds: float


def download(
    url: str | Source,
    output_dir,
    *,
    md5: str | None = None,
    extract: bool = False,
    keep_archive: bool = False,
    only: Sequence[str] | None = None,
    overwrite: bool = False,
    retry: RetryPolicy = DEFAULT_RETRY,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: ProgressCallback | None = None,
    expected_size: int | None = None,
) -> DownloadResult:
    """Downloads (and with `extract`, unpacks) one .tar.gz, verifying its MD5.

    Args:
      url: `http(s)://...`, `gs://bucket/object`, or a `Source`.
      output_dir: where the archive and/or extracted files go; created if missing.
      md5: expected MD5 (hex, any case). Optional when the server reports one; when both are
        known they must agree.
      extract: unpack while downloading (one pass, no archive on disk unless `keep_archive`).
      keep_archive: with `extract`, also keep the archive as `<name>`.
      only: with `extract`, glob patterns over member paths; other members are discarded.
      overwrite: replace an existing `<name>` or existing extracted files that differ.
      retry: how to retry dropped connections and server errors.
      timeout_s: a read waiting longer than this counts as a dropped connection.
      progress: called with a `Progress` as bytes and members go by (maybe from a worker
        thread, never two calls at once).
      expected_size: the archive's size when the server reports none (the registry's
        `Artifact.size_bytes`); used only for the disk-space check.

    Returns:
      What was downloaded, reused and extracted (`DownloadResult`).

    Raises:
      ChecksumMismatchError: the bytes do not have the expected MD5 (kept, see module doc).
      ArchiveError: with `extract`, the stream is not a readable .tar.gz.
      LockBusyError: another process is downloading `<name>` into `output_dir`.
      InsufficientSpaceError: the archive (or its files) cannot fit; nothing was written.
      UsageError: a malformed `md5`, or `keep_archive`/`only` without `extract`.
      DownloadError: anything else (HTTP 404, retries exhausted, ...); `<name>.part` is kept.
      OSError: the output folder cannot be written.

    Files in `output_dir` for an archive `<name>`:
      `<name>.part`          bytes received so far; a later run resumes from it (re-hashing it).
      `<name>`               the complete archive, renamed from `.part` once its MD5 matched.
      `<name>.md5-mismatch`  a complete archive whose MD5 did not match; never deleted by us.
      `<name>.corrupt`       with extract, archive bytes that stopped inflating or untarring
                             (moved aside so that the next run starts afresh).
      `<name>.{md5-mismatch,corrupt}.files.txt`  with extract, the files written from such a
                             stream (they may be damaged).
      `.<name>.lock`         an exclusive `flock` held for the whole call: a second download of
                             `<name>` into the same folder fails at once with `LockBusyError`
                             naming the holder's PID (per archive, so the released archives can
                             be fetched side by side into one folder); left in place.
      `.heldout-extract-*/`  with extract, this run's private folder of temporaries (removed
                             at the end; only a killed process leaves one behind).

    None of these is ever followed or replaced when it is a symbolic link someone else made
    (`.part` and the lock are refused; `<name>` is read through, never replaced).

    The MD5 covers a local prefix as read from disk. New bytes are appended to `<name>.part`
    when the archive is kept (plain download, extract with `keep_archive`, or whenever a `.part`
    already exists). An interrupted extraction without a kept archive streams the archive again
    from the start; members already there with identical bytes are compared, not rewritten.
    `.part` is fsynced before it is renamed and the folder after; extracted files are fsynced
    before their rename. Disk space is checked before anything is written (`_check_space`).
    """
    if (keep_archive or only) and not extract:
        raise UsageError("keep_archive and only apply to extract=True")
    if md5 is not None:
        md5 = normalize_md5(md5)  # a typo fails here, before any network traffic
    started = time.monotonic()
    with contextlib.ExitStack() as owned:
        source = url
        if isinstance(url, str):  # a source opened here is closed here (its pooled sockets)
            source = owned.enter_context(contextlib.closing(open_source(url, timeout_s=timeout_s)))
        request = _Request(
            Path(output_dir), md5, extract, keep_archive, only, overwrite, retry, expected_size
        )
        return _download(source, request, Reporter(progress, None), started)


@dataclasses.dataclass(frozen=True)
class _Request:
    """`download`'s arguments, checked (see there)."""

    output_dir: Path
    md5: str | None
    extract: bool
    keep_archive: bool
    only: Sequence[str] | None
    overwrite: bool
    retry: RetryPolicy
    expected_size: int | None


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Where the archive's bytes come from and go, decided from the files in `output_dir`.

    Attributes:
      verify_existing: a complete `<name>` is there and is only to be checked.
      prefix: a local file supplying the first bytes (`<name>` or `<name>.part`), or None.
      prefix_size: its size.
      append_to: the file new bytes are appended to (`<name>.part`), or None (not kept).
    """

    verify_existing: bool
    prefix: Path | None
    prefix_size: int
    append_to: Path | None


def _plan(final: Path, part: Path, request: _Request) -> _Plan:
    final_exists = _existing_archive(final, request)
    part_exists = refuse_link_or_special(part, "the partial download") is not None
    if not request.extract and final_exists and not request.overwrite:
        return _Plan(True, final, final.stat().st_size, None)
    # Local bytes first: a complete archive (only worth reading when extracting), else a
    # prefix. An existing `.part` is always continued: it is a download the user started.
    if request.extract and final_exists:
        prefix, append_to = final, None
    else:
        prefix = part if part_exists else None
        keep = prefix is not None or not request.extract or request.keep_archive
        append_to = part if keep else None
    prefix_size = prefix.stat().st_size if prefix is not None else 0
    return _Plan(False, prefix, prefix_size, append_to)


def _existing_archive(final: Path, request: _Request) -> bool:
    """Whether a complete `<name>` is there to read. A symbolic link to a regular file is
    read through (a shared copy of the release), never replaced: with `overwrite`, or when
    it dangles or leads to anything else, it is refused (one line naming it)."""
    st = lstat_or_none(final)
    if st is None:
        return False
    if stat.S_ISLNK(st.st_mode):
        if request.overwrite or not final.is_file():
            raise DownloadError(
                f"{final}: is a symbolic link{' (dangling)' if not final.exists() else ''}; "
                "heldout never follows a link to write, nor replaces a link it did not make: "
                "move it away"
            )
        return True
    check_regular(final, "the archive")
    return True


def _download(source: Source, request: _Request, reporter: Reporter, started: float):
    """`download` with its source open and its arguments checked."""
    output_dir = request.output_dir
    final = output_dir / source.filename
    part = output_dir / (source.filename + PART_SUFFIX)

    info: RemoteInfo = call_with_retries(source.info, request.retry, reporter.retry)
    expected = _expected_md5(request.md5, info, source.url)
    reporter.total = info.size

    # The space check comes before the folder, the lock or a `.part` is created: a refusal
    # leaves nothing behind. Under the lock the plan is made again (files may have changed).
    size = info.size if info.size is not None else request.expected_size
    plan = _plan(final, part, request)
    if not plan.verify_existing:
        _check_space(source.filename, size, plan, request)
    ensure_dir(output_dir)
    lock_path = output_dir / f".{source.filename}{LOCK_SUFFIX}"
    # FileLock opens its file itself; a link there (to a victim's file) is refused first.
    refuse_link_or_special(lock_path, "the download's lock file")
    lock = FileLock(lock_path, f"downloading {source.filename} into {output_dir}")
    with lock:
        plan = _plan(final, part, request)
        if plan.verify_existing:
            return _check_existing(source, final, expected, reporter, started)
        return _transfer(source, info, expected, plan, request, reporter, started)


def _archive_stem(filename: str) -> str:
    """`cifar10-inception.tar.gz` -> `cifar10-inception`: the folder a release unpacks to."""
    for suffix in _ARCHIVE_SUFFIXES:
        if filename.endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)]
    return filename


def _bytes_under(folder: Path) -> int:
    """Total size of the regular files below `folder` (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # vanished meanwhile: not there, then
                st = os.lstat(os.path.join(root, name))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


def _check_space(filename: str, size: int | None, plan: _Plan, request: _Request) -> None:
    """Refuses, before anything is written, a download that cannot fit on the disk.

    What is needed:
      - the archive bytes still to come, when the archive is kept (`size` minus what
        `.part` already holds);
      - when extracting every member: the unpacked size, estimated as the archive's size.
        The released archives hold `.npz` arrays and checkpoints that gzip barely shrinks,
        so their content is at least that large; files already under `<output_dir>/<stem>/`
        (where a released archive unpacks, e.g. `cifar10-inception/`) count as extracted,
        so a rerun after an interruption is not refused for what it already wrote.
      - with `only`, nothing for the content: the selection's size is unknown until it is
        streamed (`*/aux_arrays.npz` is ~1% of an archive, `*` all of it), and refusing a
        few-GB selection because the whole archive would not fit is worse than the late
        `[Errno 28]` this check exists to prevent.
    Without a size (the server reports none and no `expected_size` was given) there is
    nothing to check against. While extracting, each member's declared size is checked
    against the free space again before any of its bytes is written (`extract`), so an
    archive far smaller than its content (or a selection too large) stops at that member.
    """
    if size is None:
        return
    archive_bytes = max(0, size - plan.prefix_size) if plan.append_to is not None else 0
    content_bytes = 0
    output_dir = request.output_dir
    if request.extract and not request.only:
        content_bytes = max(0, size - _bytes_under(output_dir / _archive_stem(filename)))
    needed = archive_bytes + content_bytes
    if needed <= 0:
        return
    what = []
    if archive_bytes:
        held = f", {format_bytes(plan.prefix_size)} already in .part" if plan.prefix_size else ""
        what.append(f"{format_bytes(archive_bytes)} more of the archive{held}")
    if content_bytes:
        what.append(f"about {format_bytes(content_bytes)} of extracted files")
    check_free_space(output_dir, needed, f"downloading {filename} ({' and '.join(what)})")


def _transfer(source, info, expected, plan, request, reporter, started) -> DownloadResult:
    """The download itself, under the lock: stream, hash, keep or extract, verify, rename."""
    output_dir = request.output_dir
    final = output_dir / source.filename
    part = output_dir / (source.filename + PART_SUFFIX)
    prefix, prefix_size, append_to = plan.prefix, plan.prefix_size, plan.append_to
    if info.size is not None and prefix_size > info.size:
        raise DownloadError(
            f"{prefix} ({prefix_size} bytes) is larger than {source.url} ({info.size} bytes): "
            "it is not a part of this object; move it away to download again"
        )
    if prefix is not None:
        reporter.note(f"reusing {prefix_size} bytes of {prefix} (re-hashing them)")
    stream = _ArchiveStream(source, info, prefix, prefix_size, append_to, request.retry, reporter)
    report = None
    if request.extract:
        report = ExtractReport()
        try:
            _extract(stream, output_dir, request.only, request.overwrite, reporter, report)
        except ArchiveError as e:
            raise unreadable(e, append_to, final, report, stream.part_stat) from None
    else:
        with contextlib.closing(iter(stream)) as chunks:
            for _ in chunks:
                pass
    actual = stream.md5.hexdigest()

    kept = final if prefix == final else append_to
    if actual != expected:
        raise mismatch(source.url, expected, actual, kept, final, report, stream.part_stat)
    if kept == part:
        durable_rename(part, final, expected=stream.part_stat)
        kept = final
    return DownloadResult(
        url=source.url,
        md5=actual,
        size=stream.bytes_total,
        bytes_downloaded=stream.bytes_remote,
        bytes_reused=prefix_size,
        archive_path=kept,
        extract=report,
        retries=reporter.retries,
        seconds=time.monotonic() - started,
    )


class _ArchiveStream:
    """The archive's bytes in order, once: a local prefix from disk, then the network from
    where it ends. Iterating hashes them and, when the archive is kept, appends the network
    bytes to `.part`."""

    def __init__(self, source, info, prefix, prefix_size, append_to, retry, reporter):
        self._source, self._info, self._retry, self._reporter = source, info, retry, reporter
        self._prefix, self._prefix_size, self._append_to = prefix, prefix_size, append_to
        self.md5 = hashlib.md5()
        self.bytes_total = 0
        self.bytes_remote = 0
        self.part_stat: os.stat_result | None = None  # the `.part` we appended to

    def _remote(self) -> Iterator[bytes]:
        size = self._info.size
        if size is not None and self._prefix_size >= size:
            return
        for chunk in remote_chunks(
            self._source, self._prefix_size, size, self._retry, self._reporter.retry
        ):
            self.bytes_remote += len(chunk)
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        chunks = self._remote()
        if self._prefix is not None:
            chunks = itertools.chain(
                file_chunks(
                    self._prefix,
                    limit=self._prefix_size,
                    follow=self._prefix != self._append_to,  # `.part` is never a link
                ),
                chunks,
            )
        fd = None
        if self._append_to is not None:
            fd = open_append(self._append_to, new=self._prefix != self._append_to)
            self.part_stat = os.fstat(fd)
        try:
            for chunk in chunks:
                self.md5.update(chunk)
                if fd is not None and self.bytes_total >= self._prefix_size:
                    self._append(fd, chunk)
                self.bytes_total += len(chunk)
                self._reporter.add_bytes(len(chunk))
                yield chunk
        finally:
            if fd is not None:
                os.close(fd)

    def _append(self, fd: int, chunk: bytes) -> None:
        """Writes all of `chunk` to `.part`; a write error (a full disk) names the file."""
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as e:
            raise DownloadError(
                f"{self._append_to}: writing the download failed ({e.strerror or e}); the bytes "
                "already there are kept and a rerun resumes from them"
            ) from None


def _expected_md5(md5: str | None, info: RemoteInfo, url: str) -> str:
    if md5 is None:
        if info.md5 is None:
            raise DownloadError(f"{url} reports no MD5: pass the expected one (md5=...)")
        return info.md5
    expected = normalize_md5(md5)
    if info.md5 is not None and info.md5 != expected:
        raise DownloadError(
            f"{url}: the server reports MD5 {info.md5}, but {expected} was expected: "
            "is this the right object?"
        )
    return expected


def _check_existing(source, final, expected, reporter, started) -> DownloadResult:
    reporter.note(f"{final} exists: checking its MD5")
    actual = md5_of(final, reporter)
    if actual != expected:
        raise ChecksumMismatchError(
            f"{final} exists but its MD5 is {actual}, not {expected}: left as it is; "
            "pass overwrite=True to download it again",
            expected=expected,
            actual=actual,
            kept_path=final,
        )
    return DownloadResult(
        url=source.url,
        md5=actual,
        size=final.stat().st_size,
        bytes_downloaded=0,
        bytes_reused=final.stat().st_size,
        archive_path=final,
        extract=None,
        retries=0,
        seconds=time.monotonic() - started,
    )


def _extract(chunks, output_dir, only, overwrite, reporter, report) -> None:
    # Three threads: (network + MD5 + archive copy) -> (inflate) -> here (tar + writes).
    compressed = threaded(chunks, name="heldout-fetch")
    inflated = threaded(gunzip(compressed), name="heldout-inflate")
    reader = ChunkReader(inflated)
    try:
        extract_tar_stream(
            reader,
            output_dir,
            only=only,
            overwrite=overwrite,
            report=report,
            on_member=lambda _, r: reporter.set_members(len(r.written) + r.already_present),
        )
        reader.drain()  # tar stops at its end marker; the MD5 needs every byte after it
    finally:
        reader.close()  # stops the workers, each closing the stage before it
