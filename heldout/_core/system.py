"""Probes of the machine, once: free disk space (refused early, with the missing amount,
rather than `[Errno 28]` hours later) and the memory this process may still take.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from heldout._core.atomic import PathLike
from heldout.errors import InsufficientSpaceError

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


def memory_available() -> int | None:
    """Bytes this process may still take: `MemAvailable` of /proc/meminfo, None if unknown.

    The one memory probe of the toolkit. Total RAM overstates what a shared machine can
    give; MemAvailable counts free memory plus what the kernel can reclaim (page cache).
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
