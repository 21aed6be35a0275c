"""One subset ratio's per-run outputs packed into one `.npy` per kind and split, for reading.

Per-run `outputs.npz` files stay the unit of writing and resume, but each holds index arrays,
both margins and its provenance beside the few bytes an analysis reads, and is checked against
its aux arrays: reading thousands costs many times reading those bytes from one file. The pack
(`<outputs root>/outputs_pack/<ratio>/`) holds the checked arrays in index order and, per run,
the size and modification time of the files it came from; it is used only while every run
asked for is in it and unchanged (a changed file sends the read back to the per-run files).
`update_pack` (what `heldout evaluate` and `heldout train` call) packs a complete ratio.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from heldout._core.atomic import commit_dir, make_temp_dir, write_json_atomic
from heldout._core.bounded_json import load_json_file
from heldout._core.locks import FileLock
from heldout._core.provenance import provenance_for
from heldout.errors import OutputsError
from heldout.release import layout as release
from heldout.release.layout import CHECKPOINTS_DIR
from heldout.release.outputs import OUTPUTS_FILE, outputs_path
from heldout.release.outputs_checked import checked_run_outputs, runs_of
from heldout.release.run_folders import AUX_ARRAYS_FILE

PACK_DIR = "outputs_pack"
LOCK_FILE = ".lock"  # in `<root>/outputs_pack/`: one packer at a time
RECORD_FILE = "record.json"
RUN_IDS_FILE = "run_ids.npy"
STAMPS_FILE = "stamps.npy"
MASKS_FILE = "masks.npy"
FORMAT = 1
PACKED = tuple(
    f"{kind}_{split}" for kind in ("logit_margin", "hinge_margin") for split in ("train", "test")
)
_RECORD_BYTES = 1 << 20


def pack_dir(experiment: release.Experiment, ratio_dir_name: str, outputs_dir=None) -> Path:
    """`<outputs_dir or experiment>/outputs_pack/<ratio>`: beside the files it packs."""
    root = Path(outputs_dir) if outputs_dir is not None else Path(experiment.path)
    return root / PACK_DIR / ratio_dir_name


def _stamps(runs: list[release.Run], experiment: release.Experiment, outputs_dir) -> np.ndarray:
    """int64 [R, 6]: size and modification time (ns) of each run's outputs file, aux arrays
    and checkpoint folder (a checkpoint added or removed changes it); -1 where missing.
    Strings and one stat per file, not Paths: a read stats thousands of runs."""
    stamps = np.full((len(runs), 6), -1, dtype=np.int64)
    stat = os.stat
    for row, run in enumerate(runs):
        folder = os.fspath(run.path)
        if outputs_dir is None:
            outputs = folder + os.sep + OUTPUTS_FILE
        else:
            outputs = os.fspath(outputs_path(run.path, experiment.path, outputs_dir))
        for column, path in enumerate(
            (outputs, folder + os.sep + AUX_ARRAYS_FILE, folder + os.sep + CHECKPOINTS_DIR)
        ):
            try:
                info = stat(path)
            except OSError:
                continue
            stamps[row, 2 * column] = info.st_size
            stamps[row, 2 * column + 1] = info.st_mtime_ns
    return stamps


def pack_outputs(
    experiment: release.Experiment | str | os.PathLike,
    subset_ratio: float,
    outputs_dir: str | os.PathLike | None = None,
    progress: Callable[[], None] | None = None,
) -> Path:
    """Packs the outputs of every run of `subset_ratio` (each file checked as it is read).

    Packers take turns (a lock file in `outputs_pack/`); readers see the old pack, none,
    or the new one, never a half-written one (written in a temporary folder, renamed).

    Args:
      experiment: an opened experiment or its folder.
      subset_ratio: the ratio whose runs are packed (all of them must have outputs).
      outputs_dir: where the runs' outputs are (`heldout evaluate --outputs_dir`); None:
        beside each run. The pack goes under it (never into a downloaded tree).
      progress: called once per run packed.

    Returns:
      The pack folder; a previous pack of the ratio is replaced.

    Raises:
      OutputsError, InconsistentRunError, ReleaseLayoutError: as `read_outputs`.
      UnsafeWriteError: the pack cannot be written (a link, a full disk), naming it.
    """
    experiment, runs = runs_of(experiment, subset_ratio)
    final = pack_dir(experiment, runs[0].ratio_dir_name, outputs_dir)
    with _packing(final):
        return _write_pack(experiment, runs, subset_ratio, outputs_dir, final, progress)


def _write_pack(experiment, runs, subset_ratio, outputs_dir, final: Path, progress) -> Path:
    """Writes the pack of `runs` at `final`; call it holding `_packing(final)`."""
    stamps = _stamps(runs, experiment, outputs_dir)  # before reading: a change meanwhile shows
    tmp = make_temp_dir(final.parent, f".{final.name}-")
    try:
        arrays: dict[str, np.ndarray] = {}
        for row, (_, aux, outputs) in enumerate(checked_run_outputs(experiment, runs, outputs_dir)):
            if row == 0:
                shape = {"train": aux.num_train, "test": aux.num_test}
                arrays[MASKS_FILE] = _open(tmp / MASKS_FILE, bool, (len(runs), aux.num_train))
                for key in PACKED:
                    size = shape[key.rsplit("_", 1)[1]]
                    arrays[key] = _open(tmp / f"{key}.npy", np.float32, (len(runs), size))
            arrays[MASKS_FILE][row] = aux.train_mask()
            for key in PACKED:
                kind, split = key.rsplit("_", 1)
                arrays[key][row] = outputs.in_index_order(split, kind)
            if progress is not None:
                progress()
        for array in arrays.values():
            array.flush()
        del arrays
        np.save(tmp / RUN_IDS_FILE, np.asarray([run.run_id for run in runs], dtype=np.int64))
        np.save(tmp / STAMPS_FILE, stamps)
        record = {"format": FORMAT, "subset_ratio": float(subset_ratio)}
        write_json_atomic(tmp / RECORD_FILE, {**record, "provenance": provenance_for()})
        old = None
        if final.exists():
            old = make_temp_dir(final.parent, f".{final.name}-old-")
            os.rename(final, old / final.name)
        commit_dir(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@contextlib.contextmanager
def _packing(final: Path) -> Iterator[None]:
    """Holds the packers' lock of `final`'s root (waiting for another packer to finish) and
    removes the temporaries a killed packer of `final` left (no one else packs meanwhile)."""
    root = final.parent
    with FileLock(root / LOCK_FILE, f"packing outputs into {root}", timeout_s=None):
        for entry in root.glob(f".{final.name}-*.tmp"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
        yield


def pack_is_current(
    experiment: release.Experiment, runs: list[release.Run], outputs_dir=None
) -> bool:
    """Whether the pack of `runs`' ratio holds exactly `runs` (same ids, same order) and
    none of their outputs files, aux arrays or checkpoint folders changed since.

    Args:
      experiment: the opened experiment.
      runs: the runs of one ratio, by id (`experiment.runs_at`).
      outputs_dir: where their outputs are; None: beside each run.

    Returns:
      True when reading the pack gives what the per-run files give; False when there is
      no pack, an unreadable one, or one of other runs or older files.
    """
    folder = pack_dir(experiment, runs[0].ratio_dir_name, outputs_dir)
    try:
        if not (folder / RECORD_FILE).is_file():
            return False
        record = load_json_file(folder / RECORD_FILE, OutputsError, max_bytes=_RECORD_BYTES)
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            return False
        if not all((folder / name).is_file() for name in (MASKS_FILE, *_packed_files())):
            return False
        packed_ids = np.load(folder / RUN_IDS_FILE)
        packed_stamps = np.load(folder / STAMPS_FILE)
    except (OutputsError, OSError, ValueError):
        return False
    ids = np.asarray([run.run_id for run in runs], dtype=np.int64)
    return np.array_equal(ids, packed_ids) and np.array_equal(
        packed_stamps, _stamps(runs, experiment, outputs_dir)
    )


def _packed_files() -> list[str]:
    return [f"{key}.npy" for key in PACKED]


@dataclasses.dataclass(frozen=True)
class PackUpdate:
    """What `update_pack` did for one ratio.

    Attributes:
      subset_ratio: the ratio.
      folder: its pack folder (there only when `status` is not "incomplete").
      runs: the runs of the ratio (with the expected ones not written yet).
      missing: of them, those without an outputs file (then nothing is packed).
      status: "packed" (written now), "current" (kept: nothing changed since) or
        "incomplete" (not written: some run has no outputs file yet).
    """

    subset_ratio: float
    folder: Path
    runs: int
    missing: int
    status: str

    def describe(self) -> str:
        """One line saying what was packed, and over how many runs."""
        what = f"outputs pack of ratio {self.subset_ratio:g}"
        if self.status == "packed":
            return f"{what}: packed {self.runs} runs into {self.folder}"
        if self.status == "current":
            return f"{what}: up to date ({self.runs} runs, {self.folder})"
        return (
            f"{what}: not written, {self.missing} of {self.runs} runs have no outputs file "
            "yet (reads use the per-run files)"
        )


def update_pack(
    experiment: release.Experiment | str | os.PathLike,
    subset_ratio: float,
    outputs_dir: str | os.PathLike | None = None,
    run_ids: list[int] | None = None,
    progress: Callable[[], None] | None = None,
) -> PackUpdate:
    """Packs `subset_ratio` when every run of it has an outputs file and its pack is not
    current; keeps a current pack as it is (no rewrite).

    Safe to call from several processes at once: packers take turns, and the second finds
    the pack the first wrote current. Call it after writing runs (the last writer sees them
    all).

    Args:
      experiment: an opened experiment or its folder.
      subset_ratio: the ratio.
      outputs_dir: where the outputs are (`heldout evaluate --outputs_dir`); None: beside
        each run. The pack goes under it.
      run_ids: runs that must exist before the ratio counts as complete (a trainer's
        planned runs); None: the runs there.
      progress: called once per run packed (only when packing).

    Returns:
      What was done (`PackUpdate`).

    Raises:
      OutputsError, InconsistentRunError: an outputs file that is not the run's current one
        or disagrees with its aux arrays (names it); nothing is packed.
      ReleaseLayoutError: `experiment` cannot be read.
      UnsafeWriteError: the pack cannot be written (a link, a full disk), naming it.
    """
    if not isinstance(experiment, release.Experiment):
        experiment = release.open_experiment(experiment)
    runs = list(experiment.runs_at(subset_ratio))
    expected = {run.run_id for run in runs} | {int(run_id) for run_id in run_ids or ()}
    have = [run for run in runs if outputs_path(run.path, experiment.path, outputs_dir).is_file()]
    name = release.ratio_dir_name(subset_ratio)
    final = pack_dir(experiment, runs[0].ratio_dir_name if runs else name, outputs_dir)
    missing = len(expected) - len(have)
    if not runs or missing:
        return PackUpdate(float(subset_ratio), final, len(expected), missing, "incomplete")
    with _packing(final):
        if pack_is_current(experiment, runs, outputs_dir):
            status = "current"
        else:
            _write_pack(experiment, runs, subset_ratio, outputs_dir, final, progress)
            status = "packed"
    return PackUpdate(float(subset_ratio), final, len(runs), 0, status)


def _open(path: Path, dtype, shape) -> np.ndarray:
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def read_packed(
    experiment: release.Experiment,
    runs: list[release.Run],
    outputs_dir,
    kind: str,
    split: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(run ids, masks, outputs) of `runs` from their ratio's pack; None where there is no
    pack or it is not current for every run (then read the per-run files)."""
    folder = pack_dir(experiment, runs[0].ratio_dir_name, outputs_dir)
    record_path = folder / RECORD_FILE
    if not record_path.is_file():
        return None
    try:
        record = load_json_file(record_path, OutputsError, max_bytes=_RECORD_BYTES)
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            return None
        packed_ids = np.load(folder / RUN_IDS_FILE)
        packed_stamps = np.load(folder / STAMPS_FILE)
        ids = np.asarray([run.run_id for run in runs], dtype=np.int64)
        if np.array_equal(ids, packed_ids):
            rows = None
            stamps = packed_stamps
        else:
            where = {int(run_id): row for row, run_id in enumerate(packed_ids)}
            rows = np.asarray([where[int(run_id)] for run_id in ids], dtype=np.int64)
            stamps = packed_stamps[rows]
        # The runs' files are checked on a thread while the arrays are read (np.load
        # releases the GIL): the pack's files never change once committed.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            current = pool.submit(_stamps, runs, experiment, outputs_dir)
            if rows is None:
                masks = np.load(folder / MASKS_FILE)
                values = np.load(folder / f"{kind}_{split}.npy")
            else:
                masks = np.load(folder / MASKS_FILE, mmap_mode="r")[rows]
                values = np.load(folder / f"{kind}_{split}.npy", mmap_mode="r")[rows]
            if not np.array_equal(stamps, current.result()):
                return None
    except (OutputsError, OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # unreadable or foreign: the per-run files decide
    if (
        masks.dtype != np.bool_
        or values.dtype != np.float32
        or masks.ndim != 2
        or values.ndim != 2
        or masks.shape[0] != len(runs)
        or values.shape[0] != len(runs)
    ):
        return None  # not what pack_outputs writes
    return ids, masks, values
