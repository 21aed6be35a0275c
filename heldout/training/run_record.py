"""The size record of a written run: what makes a run folder count as finished on resume.

The trainer lists the size of every file of a run in `.heldout-run.json` inside the run
folder before committing it. A resume counts a run as finished only if every recorded
file still has that size: a truncated checkpoint is retrained, not skipped.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path, PurePosixPath

from heldout._core.atomic import write_json_atomic

RUN_RECORD_FILE = ".heldout-run.json"
_FORMAT = 1
_MAX_RECORD_BYTES = 1 << 20  # a run has a handful of files; a larger record is not ours


def _regular_files(run_dir: Path) -> dict[str, int]:
    """relative POSIX path -> size of every regular file below `run_dir` (links skipped)."""
    sizes = {}
    for root, dirs, files in os.walk(run_dir):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and name != RUN_RECORD_FILE:
                sizes[path.relative_to(run_dir).as_posix()] = info.st_size
    return sizes


def write_run_record(run_dir: Path) -> None:
    """Records the sizes of the files now in `run_dir` (the run's temporary folder).

    Call it last, once every file of the run is written and before the folder is committed.
    """
    write_json_atomic(
        Path(run_dir) / RUN_RECORD_FILE, {"format": _FORMAT, "sizes": _regular_files(run_dir)}
    )


def has_run_record(run_dir: Path) -> bool:
    """Whether `run_dir` has a size record (a link or a folder by that name counts)."""
    path = Path(run_dir) / RUN_RECORD_FILE
    return path.exists() or path.is_symlink()


def _recorded_sizes(record_path: Path) -> dict[str, int] | str:
    """The recorded sizes, or why the record is unusable."""
    try:
        info = record_path.lstat()
    except FileNotFoundError:
        return (
            f"{record_path.parent}: no size record {RUN_RECORD_FILE} (written by an older "
            "trainer, or removed): cannot tell that its checkpoint is complete"
        )
    except OSError as error:
        return f"{record_path}: unreadable ({error.strerror or error})"
    if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_RECORD_BYTES:
        return f"{record_path}: not a size record written by this trainer"
    try:
        record = json.loads(record_path.read_bytes())
    except (OSError, ValueError, RecursionError) as error:
        return f"{record_path}: unreadable size record ({type(error).__name__})"
    sizes = record.get("sizes") if isinstance(record, dict) else None
    well_formed = (
        isinstance(record, dict)
        and record.get("format") == _FORMAT
        and isinstance(sizes, dict)
        and all(
            isinstance(size, int) and not isinstance(size, bool) and size >= 0
            for size in sizes.values()
        )
    )
    if not well_formed:
        return f"{record_path}: not a size record written by this trainer"
    for name in sizes:
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or ".." in parts or "\\" in name:
            return f"{record_path}: names a file outside the run ({name!r})"
    return sizes


def run_record_problem(run_dir: Path) -> str | None:
    """Why `run_dir`'s files are not those its size record lists; None when they are.

    Every recorded file must be a regular file (not a link) of the recorded size.
    """
    sizes = _recorded_sizes(Path(run_dir) / RUN_RECORD_FILE)
    if isinstance(sizes, str):
        return sizes
    for name, size in sorted(sizes.items()):
        path = Path(run_dir) / name
        try:
            info = path.lstat()
        except OSError:
            return f"{path}: missing (recorded when the run was written)"
        if not stat.S_ISREG(info.st_mode):
            return f"{path}: not a regular file (a link or a folder)"
        if info.st_size != size:
            return f"{path}: {info.st_size} bytes, {size} when the run was written (truncated?)"
    return None
