"""Bytes that failed a check are kept aside, never deleted: renamed archives and lists
of the files extracted from a bad stream, with the message that says where they are.
"""

from __future__ import annotations

import os
from pathlib import Path

from heldout._core.atomic import fsync_dir, fsync_file, write_text_atomic
from heldout.download.errors import ArchiveError, ChecksumMismatchError, DownloadError
from heldout.download.extract import ExtractReport
from heldout.download.local import refuse_link_or_special, same_file

MISMATCH_SUFFIX = ".md5-mismatch"
CORRUPT_SUFFIX = ".corrupt"
RERUN_HINT = (
    "Run again to retry; files already written are compared, and those that differ "
    "are reported (overwrite=True replaces them)."
)


def durable_rename(path: Path, target: Path, expected: os.stat_result | None = None) -> None:
    """Renames a file we appended to, with its data on disk first and the rename after.

    Without the first fsync a crash soon after the rename can leave `<name>` holding
    fewer bytes (or zeros) than were verified; without the second the rename itself can
    be lost. Only a regular file is renamed (never a link someone put there), and with
    `expected` only that very file (the one we wrote): else a DownloadError, nothing moved.
    """
    st = refuse_link_or_special(path, "the partial download")
    if st is None or (expected is not None and not same_file(st, expected)):
        raise DownloadError(
            f"{path}: was replaced or removed by another program while heldout wrote it; "
            "left as it is"
        )
    fsync_file(path)
    os.replace(path, target)
    fsync_dir(target.parent)


def unused_name(path: Path) -> Path:
    candidate, n = path, 1
    while os.path.lexists(candidate):  # a dangling link counts: never replaced
        candidate = path.with_name(f"{path.name}.{n}")
        n += 1
    return candidate


def unreadable(error, append_to, final, report, part_stat=None) -> ArchiveError:
    """Moves a `.part` that holds unreadable data aside (a resume would stop at the same
    place), lists the files written from the bad stream, and says where everything is.
    `part_stat`: the `.part` we appended to; only that very file is moved."""
    lines = [str(error)]
    if append_to is not None and os.path.lexists(append_to):
        kept = unused_name(final.with_name(final.name + CORRUPT_SUFFIX))
        durable_rename(append_to, kept, expected=part_stat)
        lines.append(f"The archive bytes received are kept as {kept}.")
    elif append_to is None and final.exists():
        lines.append(
            f"{final} was read as it is and left untouched: move it away to "
            "download the archive again."
        )
    lines += _list_written(report, final, CORRUPT_SUFFIX)
    lines.append(RERUN_HINT)
    return ArchiveError(" ".join(lines))


def _list_written(report: ExtractReport, final: Path, suffix: str) -> list[str]:
    """Writes the list of files extracted from a bad stream beside the archive's name."""
    if not report.written:
        return []
    listing = unused_name(final.with_name(final.name + suffix + ".files.txt"))
    write_text_atomic(listing, "".join(f"{path}\n" for path in report.written))
    return [
        f"{len(report.written)} files were extracted from this stream and may be damaged; "
        f"they are listed in {listing}."
    ]


def mismatch(url, expected, actual, kept, final, report, part_stat=None) -> ChecksumMismatchError:
    """The error for bytes whose MD5 is not `expected`, with a `.part` (`kept`, the file
    `part_stat` describes when given) renamed aside to `<name>.md5-mismatch`."""
    lines = [f"MD5 mismatch for {url}: expected {expected}, got {actual}."]
    kept_path = None
    if kept is not None and kept != final:
        kept_path = unused_name(final.with_name(final.name + MISMATCH_SUFFIX))
        durable_rename(kept, kept_path, expected=part_stat)
        lines.append(f"The data is kept as {kept_path}.")
    elif kept == final:
        kept_path = final
        lines.append(f"{final} was read as it is and left untouched.")
    if report is not None:
        lines += _list_written(report, final, MISMATCH_SUFFIX)
        lines.append(RERUN_HINT)
    return ChecksumMismatchError(
        " ".join(lines), expected=expected, actual=actual, kept_path=kept_path
    )
