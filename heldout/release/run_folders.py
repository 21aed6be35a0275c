"""Find an experiment's ratio and run folders, each counted once.

Two folder names that denote one ratio (`0.7`, `0.70`) or one run id (`1`, `01`), and a
folder or `aux_arrays.npz` reached twice through links, would count one run twice and
change the scores silently: each is refused here, naming both paths.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from heldout.errors import ReleaseLayoutError

AUX_ARRAYS_FILE = "aux_arrays.npz"

_RATIO_NAME = re.compile(r"^(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e-?[0-9]+)?$")
_RUN_ID_NAME = re.compile(r"^[0-9]+$")


def parse_ratio(name: str) -> float | None:
    """The subset ratio a folder name stands for, or None for any other folder.

    Only ASCII decimals (`0.7`, `.5`, `1.0`, `1e-05`): `float` also accepts other scripts'
    digits, whitespace, `nan` and `inf`, none of which names a ratio folder.
    """
    if not _RATIO_NAME.match(name):
        return None
    value = float(name)
    return value if 0.0 < value <= 1.0 else None


def parse_run_id(name: str) -> int | None:
    """The run id a folder name stands for (ASCII digits only: `str.isdigit` accepts "²")."""
    return int(name) if _RUN_ID_NAME.match(name) else None


def ratio_key(subset_ratio: float) -> float:
    """The one canonical form of a subset ratio, for comparing and grouping ratios.

    Ratios parsed from folder names or typed by users: 0.7 and 0.7000000000001 are one.
    """
    return round(float(subset_ratio), 9)


def ratio_dirs(experiment_dir: Path) -> list[tuple[float, Path]]:
    """(ratio, folder) of every ratio folder, sorted; aliases not yet checked."""
    found = []
    for child in experiment_dir.iterdir():
        ratio = parse_ratio(child.name)
        if ratio is not None and child.is_dir():
            found.append((ratio, child))
    return sorted(found)


def _identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of what `path` leads to, or None where it cannot be followed."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


Identity = tuple[int, int] | None


def _run_candidate(child: str) -> tuple[bool, Identity, Identity]:
    """Whether a folder named by a run id is a run, or should be and cannot be read as
    one; and what the folder and its `aux_arrays.npz` lead to (`_identity`).

    An empty folder is nothing (no run, no file dropped). A folder holding anything, a
    link that cannot be followed and a folder that cannot be listed are runs: reading
    their `aux_arrays.npz` then names what is wrong, instead of the run vanishing.
    Two `stat`s for a usual run, as many as telling a folder and a file apart takes.
    """
    try:
        info = os.stat(child)
    except OSError:
        return os.path.islink(child), None, None  # a dangling link: its file is missing
    if not stat.S_ISDIR(info.st_mode):
        return False, None, None
    folder = info.st_dev, info.st_ino
    aux = os.path.join(child, AUX_ARRAYS_FILE)
    try:
        file = os.stat(aux)
        return True, folder, (file.st_dev, file.st_ino)
    except FileNotFoundError:
        if os.path.islink(aux):
            return True, folder, None  # a dangling link
    except OSError:
        return True, folder, None  # an unreadable folder, a link loop: the read says
    try:
        with os.scandir(child) as entries:
            return next(entries, None) is not None, folder, None
    except OSError:
        return True, folder, None


class _Seen:
    """Paths by what they lead to; the second path reaching one thing is refused."""

    def __init__(self, what: str):
        self._what = what
        self._paths: dict[object, Path] = {}

    def add(self, key: object, path: Path, why: str) -> None:
        if key is None:
            return
        first = self._paths.setdefault(key, path)
        if first != path:
            raise ReleaseLayoutError(
                f"{first} and {path}: {why}; each {self._what} must be counted once "
                "(remove or rename one of them)"
            )


def find_run_folders(experiment_dir: Path) -> list[tuple[float, str, int, Path]]:
    """(ratio, ratio folder name, run id, run folder) of every run, sorted by ratio, run id.

    Args:
      experiment_dir: the experiment folder.

    Returns:
      Every run folder, each once; a run's `aux_arrays.npz` may still be missing or
      unreadable (reading it says so).

    Raises:
      ReleaseLayoutError: two folders that denote one ratio or one run id, or a ratio
        folder, run folder or `aux_arrays.npz` reached twice through links; names both.
    """
    ratio_names = _Seen("subset ratio")
    folders = _Seen("folder")
    runs = []
    for ratio, ratio_dir in ratio_dirs(experiment_dir):
        ratio_names.add(ratio_key(ratio), ratio_dir, f"both name subset ratio {ratio}")
        folders.add(_identity(ratio_dir), ratio_dir, "are one folder (a link)")
        run_ids = _Seen("run")
        with os.scandir(ratio_dir) as entries:
            children = sorted((entry.name, entry.path) for entry in entries)
        for name, child in children:
            run_id = parse_run_id(name)
            if run_id is None:
                continue
            is_run, folder, file = _run_candidate(child)
            if is_run:
                run_dir = Path(child)
                run_ids.add(run_id, run_dir, f"both name run {run_id}")
                runs.append((ratio, ratio_dir.name, run_id, run_dir, folder, file))
    files = _Seen("run")
    for *_, run_dir, folder, file in runs:
        folders.add(folder, run_dir, "are one run folder (reached through links)")
        files.add(file, run_dir / AUX_ARRAYS_FILE, "are one file (reached through links)")
    runs.sort(key=lambda found: (found[0], found[2]))
    return [found[:4] for found in runs]
