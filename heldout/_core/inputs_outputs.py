"""No command writes over what it reads: an output that is one of its input files (by
path, through a symbolic link, or as a hard link to the same inode), or that lies inside
an input folder (an experiment's ratio and run folders), is refused before any work, in
one line naming both.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from heldout.errors import OutputOverInputError

PathLike = str | os.PathLike

EXPERIMENT_META_FILE = "experiment.json"  # what heldout.release.layout reads (a lower layer
# may not import it); the experiment's subfolders hold its runs.


def _identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of what `path` names, links followed; None where it does not exist."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    return found.st_dev, found.st_ino


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(path)))


def _same(a: Path, b: Path) -> bool:
    ids = _identity(a), _identity(b)
    if ids[0] is not None and ids[1] is not None:
        return ids[0] == ids[1]
    return _resolved(a) == _resolved(b)


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies below it: by inode for the folders above `path`
    that exist (bind mounts, links on the way), by resolved path otherwise."""
    resolved, root = _resolved(path), _resolved(folder)
    if resolved == root or root in resolved.parents:
        return True
    folder_id = _identity(folder)
    if folder_id is None:
        return False
    return any(_identity(above) == folder_id for above in (resolved, *resolved.parents))


def _hard_link_inside(path: Path, folder: Path) -> Path | None:
    """The file below `folder` that `path` is a hard link of, if any; looked for only when
    `path` is a file with more than one link, so the common case walks nothing."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    if found.st_nlink < 2 or not os.path.isfile(path):
        return None
    wanted = found.st_dev, found.st_ino
    for above, _, names in os.walk(folder):
        for name in names:
            if _identity(Path(above) / name) == wanted:
                return Path(above) / name
    return None


def tree_inputs(root: PathLike) -> tuple[list[Path], list[Path]]:
    """What reading a folder of folders (an experiment, a TFDS data_dir) reads: (files,
    folders), i.e. its `experiment.json` and every subfolder (ratio folders and their
    runs, datasets), so that a scores file may still be written beside them."""
    root = Path(os.path.expanduser(root))
    try:
        folders = [entry for entry in root.iterdir() if entry.is_dir()]
    except OSError:
        folders = []
    return [root / EXPERIMENT_META_FILE], sorted(folders)


def data_inputs(data_dir: PathLike, dataset: str | None) -> tuple[list[Path], list[Path]]:
    """What reading a dataset from `data_dir` reads, as far as the command line knows:
    (files, folders), i.e. the folder itself and the dataset's own folder (TFDS:
    `<data_dir>/<name>`). Other entries of a data folder may be the user's outputs (a
    scores file written there last time), so they are not counted as inputs."""
    root = Path(os.path.expanduser(data_dir))
    folders = [root / dataset.split(":")[0].split("/")[0]] if dataset else []
    return [root], folders


def refuse_output_over_inputs(
    outputs: Iterable[PathLike | None],
    input_files: Iterable[PathLike | None] = (),
    input_dirs: Iterable[PathLike | None] = (),
    input_trees: Iterable[PathLike | None] = (),
    data_dir: PathLike | None = None,
    dataset: str | None = None,
) -> None:
    """Refuses, before any work, a command whose output would replace one of its inputs.

    Compared by (st_dev, st_ino) where both paths exist (so a hard link or a symbolic link
    to an input is caught), by resolved path otherwise. None entries (flags not given)
    are skipped.

    Args:
      outputs: the files and folders the command writes.
      input_files: the files it reads.
      input_dirs: the folders it reads: no output may be one, or lie inside one.
      input_trees: the folders of folders it reads (experiments, data_dirs): see
        `tree_inputs`; an output may sit beside their subfolders, not inside one.
      data_dir: the data folder it reads (see `data_inputs`), with `dataset`'s name.

    Raises:
      OutputOverInputError: one line naming the output and the input.
    """
    files = [Path(os.path.expanduser(f)) for f in input_files if f]
    dirs = [Path(os.path.expanduser(d)) for d in input_dirs if d]
    for tree in input_trees:
        if tree:
            tree_files, tree_dirs = tree_inputs(tree)
            files += tree_files
            dirs += tree_dirs
    if data_dir:
        data_files, data_dirs = data_inputs(data_dir, dataset)
        files += data_files
        dirs += data_dirs
    for output in outputs:
        if not output:
            continue
        output = Path(os.path.expanduser(output))
        for file in files:
            if _same(output, file):
                raise OutputOverInputError(
                    f"{output} is the input {file}; refusing to write over an input "
                    "(choose another output)"
                )
        for folder in dirs:
            if _inside(output, folder):
                raise OutputOverInputError(
                    f"{output} lies inside the input folder {folder}; refusing to write "
                    "into an input (choose an output outside it)"
                )
            linked = _hard_link_inside(output, folder)
            if linked is not None:
                raise OutputOverInputError(
                    f"{output} is a hard link to the input {linked}; refusing to write over "
                    "an input (choose another output)"
                )
