"""The runs of one subset ratio exported as the retraining ground truth attribution tools read.

TRAK/Kronfluence: `masks.npy` bool [runs, n_train] and `margins.npy` float32 [runs, n]. dattri:
the (target values, indices) pair its `lds` takes (TRAIS-Lab/dattri dattri/metric/metrics.py;
made by dattri/metric/ground_truth.py `calculate_lds_ground_truth`). A JSON sidecar says what
they are; rows stream into memory-mapped files of a temporary folder renamed into place.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from heldout._core.atomic import make_temp_dir, replace_dir, write_json_atomic
from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout._core.provenance import provenance_for
from heldout._core.write_safety import WRITE_ERRNOS, check_replaceable_dir, write_failure
from heldout.errors import (
    InconsistentRunError,
    UnsafeWriteError,
    UsageError,
)
from heldout.release.layout import Experiment, Run
from heldout.release.outputs import run_identity
from heldout.release.outputs_reading import read_outputs
from heldout.release.reading import read_runs
from heldout.scores.attribution.scoring import CORRECTNESS, MARGIN
from heldout.scores.attribution.split import ratio_runs, split_runs

__all__ = [
    "FORMATS",
    "OUTPUT_KINDS",
    "SIDECAR_FILE",
    "GroundTruthExport",
    "check_output_dir",
    "export_ground_truth",
    "select_runs",
]

TRAK, DATTRI = "trak", "dattri"
FORMATS = (TRAK, DATTRI)
OUTPUT_KINDS = (MARGIN, CORRECTNESS)
SPLITS = ("test", "train")
MASKS_FILE = "masks.npy"
OUTPUTS_FILES = {MARGIN: "margins.npy", CORRECTNESS: "correctness.npy"}
DATTRI_TARGETS_FILE = "target_values_lds.npy"  # dattri's benchmark names, as .npy
DATTRI_INDICES_FILE = "indices_lds.npy"
SIDECAR_FILE = "ground_truth.json"
EXPORT_FILES = frozenset(
    {MASKS_FILE, *OUTPUTS_FILES.values(), DATTRI_TARGETS_FILE, DATTRI_INDICES_FILE, SIDECAR_FILE}
)
DATTRI_SOURCE = (
    "TRAIS-Lab/dattri: dattri/metric/ground_truth.py (calculate_lds_ground_truth), "
    "dattri/metric/metrics.py (lds)"
)
_MEANING = {
    MARGIN: "logit margin z_y - logsumexp_{k != y} z_k (TRAK's model output)",
    CORRECTNESS: "0/1 correctness from the aux arrays (the noisier variant: no margin)",
}


@dataclasses.dataclass(frozen=True)
class GroundTruthExport:
    """What `export_ground_truth` wrote.

    Attributes:
      output_dir: the export folder.
      files: the files in it, the sidecar last.
      run_ids: the runs, in row order.
      num_train: columns of the masks (the full training split).
      num_examples: columns of the outputs (the exported split).
      sidecar: the JSON sidecar's content.
    """

    output_dir: Path
    files: tuple[Path, ...]
    run_ids: tuple[int, ...]
    num_train: int
    num_examples: int
    sidecar: dict


def select_runs(
    experiment: Experiment,
    subset_ratio: float | None = None,
    selection: float | Sequence[int] | None = None,
    seed: int = 0,
) -> tuple[float, list[Run]]:
    """The runs of one ratio to export, by run id.

    Args:
      experiment: the opened experiment.
      subset_ratio: the ratio; None: 0.5, refused where the experiment has no 0.5 runs.
      selection: None (every run), run ids, or a fraction drawn with `seed` exactly as
        `heldout attribution --evaluation_runs=<fraction> --seed=<seed>` draws its
        evaluation runs (`split_runs`), so the other runs stay free for estimation.
      seed: of the fraction's draw.

    Returns:
      (the ratio, its selected runs sorted by run id).

    Raises:
      UsageError: no runs at the ratio, unknown run ids, or a fraction that selects none
        or all of the runs.
    """
    subset_ratio, ratio_runs_list = ratio_runs(experiment, subset_ratio)
    runs = {run.run_id: run for run in ratio_runs_list}
    if selection is None:
        chosen = sorted(runs)
    elif isinstance(selection, float):
        count = int(round(selection * len(runs)))
        if count in (0, len(runs)):
            raise UsageError(
                f"--runs={selection} of {len(runs)} runs selects {count}; give a fraction that "
                "leaves some runs out, or no --runs for all of them"
            )
        chosen = list(split_runs(sorted(runs), evaluation=selection, seed=seed).evaluation)
    else:
        unknown = sorted(set(selection) - set(runs))
        if unknown:
            raise UsageError(
                f"--runs: run ids {unknown[:10]} are not among the {len(runs)} runs of ratio "
                f"{subset_ratio}"
            )
        chosen = sorted(set(selection))
    return subset_ratio, [runs[i] for i in chosen]


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """Refuses, before any work, an output folder that is not one this export may fill.

    It may be missing, empty, or hold only the files of an earlier export (replaced).

    Raises:
      UnsafeWriteError: it is a symbolic link.
      StaleResultError: it is a file, or holds anything else (named).
    """
    check_replaceable_dir(output_dir, EXPORT_FILES, "ground-truth export")


def _rows(
    experiment: Experiment,
    runs: Sequence[Run],
    output_kind: str,
    split: str,
    outputs_dir,
) -> Iterator[tuple[Run, np.ndarray, np.ndarray]]:
    """(run, training mask, outputs of `split` in index order) for each run, one at a time."""
    if output_kind == CORRECTNESS:
        for run, aux in read_runs(list(runs)):
            values = aux.test_correctness() if split == "test" else aux.train_correctness()
            yield run, aux.train_mask(), values.astype(np.float32)
        return
    for run in runs:
        _, masks, values = read_outputs(
            experiment, run.subset_ratio, outputs_dir, "logit_margin", split, [run.run_id]
        )
        yield run, masks[0], values[0]


def _new_memmap(path: Path, dtype, shape: tuple[int, int]) -> np.memmap:
    """A new `.npy` mapped for writing, its blocks allocated first: a full disk is then an
    error naming the file here, not a SIGBUS when a page of a sparse file is written."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    try:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # EINVAL: not on this system
            raise
    return array


def _stream(rows, total: int, folder: Path, values_name: str, progress: bool):
    """Writes the rows into `masks.npy` and `values_name` in `folder`, preallocated.

    Returns:
      (run ids, identities digest, n_train, n_examples, subset sizes).
    """
    from tqdm import tqdm

    ids, identities, sizes = [], hashlib.sha256(), []
    masks = values = first = None
    with tqdm(total=total, unit="run", desc="exporting runs", disable=not progress) as bar:
        for row, (run, mask, value) in enumerate(rows):
            if masks is None:
                first = run.aux_path
                masks = _new_memmap(folder / MASKS_FILE, np.bool_, (total, mask.size))
                values = _new_memmap(folder / values_name, np.float32, (total, value.size))
            elif (mask.size, value.size) != (masks.shape[1], values.shape[1]):
                raise InconsistentRunError(
                    f"{run.aux_path}: {mask.size} training and {value.size} exported examples, "
                    f"but {first} has {masks.shape[1]} and {values.shape[1]}"
                )
            masks[row], values[row] = mask, value
            ids.append(run.run_id)
            sizes.append(int(np.count_nonzero(mask)))
            identity = run_identity(run.path, run.subset_ratio, run.run_id)
            identities.update(json.dumps(identity, sort_keys=True).encode())
            bar.update(1)
    shape = masks.shape[1], values.shape[1]
    masks.flush()
    values.flush()
    del masks, values  # closes the maps before the folder is renamed
    return ids, identities.hexdigest(), *shape, sizes


def _dattri_indices(folder: Path, num_train: int, sizes: list[int]) -> int | None:
    """`indices_lds.npy` int64 [runs, max subset size] from the masks: each run's training
    indices, ascending; rows of smaller subsets padded with `num_train`, which dattri's
    `lds` drops (`indices < num_train_samples`). Returns the pad (None: no padding)."""
    masks = np.load(folder / MASKS_FILE, mmap_mode="r")
    width = max(sizes) if sizes else 0
    pad = num_train if sizes and min(sizes) != width else None
    indices = _new_memmap(folder / DATTRI_INDICES_FILE, np.int64, (len(sizes), width))
    for row in range(len(sizes)):
        trained = np.flatnonzero(masks[row])
        indices[row, : trained.size] = trained
        indices[row, trained.size :] = num_train
    indices.flush()
    del indices, masks
    return pad


def _lay_out(folder: Path, formats, values_name: str, output_kind: str, sizes, num_examples):
    """Turns the streamed `masks.npy` and outputs into the files of `formats`.

    Returns:
      (file name -> what it holds, in the sidecar's words; dattri's pad index or None).
    """
    runs, num_train = len(sizes), np.load(folder / MASKS_FILE, mmap_mode="r").shape[1]
    meaning = f"float32 [{runs}, {num_examples}]: {_MEANING[output_kind]}"
    files, pad = {}, None
    if TRAK in formats:
        files[MASKS_FILE] = f"bool [{runs}, {num_train}]: True where the run trained on j"
        files[values_name] = meaning
    if DATTRI in formats:
        pad = _dattri_indices(folder, num_train, sizes)
        files[DATTRI_TARGETS_FILE] = meaning
        files[DATTRI_INDICES_FILE] = (
            f"int64 [{runs}, {max(sizes)}]: each run's training indices, ascending"
            + (f"; padded with {pad}" if pad is not None else "")
        )
        if TRAK in formats:
            shutil.copyfile(folder / values_name, folder / DATTRI_TARGETS_FILE)
        else:
            os.replace(folder / values_name, folder / DATTRI_TARGETS_FILE)
    if TRAK not in formats:
        (folder / MASKS_FILE).unlink()
    return files, pad


def _experiment_identity(experiment: Experiment) -> dict:
    meta = experiment.meta
    return {
        "path": str(experiment.path.absolute()),
        "name": meta.name,
        "dataset": meta.dataset,
        "index_order": meta.index_order,
        "arch": meta.arch,
        "num_classes": meta.num_classes,
        "num_train": meta.num_train,
        "num_test": meta.num_test,
        "recorded": meta.extra,  # the rest of experiment.json (how it was trained)
    }


def _failed_writing(error: BaseException, tmp: Path) -> bool:
    """A full disk or a size limit met while writing in `tmp` (numpy names no file)."""
    if not isinstance(error, OSError) or isinstance(error, UnsafeWriteError):
        return False
    where = error.filename
    return error.errno in WRITE_ERRNOS and (
        where is None or Path(os.fsdecode(where)).is_relative_to(tmp)
    )


def export_ground_truth(
    experiment: Experiment,
    runs: Sequence[Run],
    output_dir: str | os.PathLike,
    *,
    output_kind: str = MARGIN,
    split: str = "test",
    formats: Sequence[str] = (TRAK,),
    outputs_dir: str | os.PathLike | None = None,
    progress: bool = False,
    **fields,
) -> GroundTruthExport:
    """Writes the runs' training masks and outputs in the formats asked, and the sidecar.

    Args:
      experiment: the opened experiment (never written into).
      runs: the runs, of one ratio (`select_runs`); rows follow their order.
      output_dir: the export folder: missing, empty or an earlier export (replaced).
      output_kind: `MARGIN` (the runs' `outputs.npz`, checked against each run's identity
        and aux arrays) or `CORRECTNESS` (the aux arrays' 0/1).
      split: "test" (default) or "train" (the full training split) for the outputs.
      formats: any of `FORMATS`: "trak" writes `masks.npy` and `margins.npy` (or
        `correctness.npy`); "dattri" writes `target_values_lds.npy` float32 [runs, n] and
        `indices_lds.npy` int64 [runs, subset size].
      outputs_dir: where a release's outputs were written; None: beside each run.
      progress: a tqdm bar over runs on stderr.
      fields: more for the sidecar (e.g. the run selection asked for).

    Returns:
      The `GroundTruthExport`.

    Raises:
      UsageError: an unknown format, kind or split, or no runs.
      OutputOverInputError: `output_dir` is, or lies inside, the experiment or `outputs_dir`.
      StaleResultError, UnsafeWriteError: `output_dir` is not one to fill (`check_output_dir`).
      OutputsError: a run without outputs, or outputs of another checkpoint (named).
      AuxArraysError: a malformed or inconsistent run (named). Nothing is written then.
    """
    formats = tuple(dict.fromkeys(formats))
    if not formats or set(formats) - set(FORMATS):
        raise UsageError(f"formats must be some of {FORMATS}, got {list(formats)}")
    if output_kind not in OUTPUT_KINDS or split not in SPLITS:
        raise UsageError(
            f"output kind {output_kind!r} / split {split!r}: use {OUTPUT_KINDS} / {SPLITS}"
        )
    if not runs:
        raise UsageError(f"{experiment.path}: no runs to export")
    output_dir = Path(output_dir)
    refuse_output_over_inputs([output_dir], input_dirs=[experiment.path, outputs_dir])
    check_output_dir(output_dir)
    values_name = OUTPUTS_FILES[output_kind]
    rows = _rows(experiment, runs, output_kind, split, outputs_dir)
    first = next(rows)  # a missing or mismatched outputs file is refused before any write
    rows = itertools.chain([first], rows)
    tmp = make_temp_dir(output_dir.absolute().parent, f".{output_dir.name}-")
    try:
        ids, digest, num_train, num_examples, sizes = _stream(
            rows, len(runs), tmp, values_name, progress
        )
        files, pad = _lay_out(tmp, formats, values_name, output_kind, sizes, num_examples)
        sidecar = provenance_for(
            experiment=_experiment_identity(experiment),
            subset_ratio=float(runs[0].subset_ratio),
            run_ids=ids,
            run_identities_sha256=digest,
            split=split,
            output_kind=output_kind,
            output=_MEANING[output_kind],
            outputs_dir=None if outputs_dir is None else str(Path(outputs_dir).absolute()),
            num_runs=len(ids),
            num_train=num_train,
            num_examples=num_examples,
            positions=f"index order of the full {split} split, as the aux arrays' index_*",
            formats=list(formats),
            files=files,
            dattri={"source": DATTRI_SOURCE, "pad_index": pad} if DATTRI in formats else None,
            **fields,
        )
        write_json_atomic(tmp / SIDECAR_FILE, sidecar)
        replace_dir(tmp, output_dir)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if _failed_writing(error, tmp):
            raise write_failure(output_dir, error) from error
        raise
    written = tuple(output_dir / name for name in (*files, SIDECAR_FILE))
    return GroundTruthExport(output_dir, written, tuple(ids), num_train, num_examples, sidecar)
