"""Resuming: which runs are finished, which only look finished, what was left behind.

Finished: files of the sizes recorded when written (`heldout.training.run_record`), aux
arrays that validate, a complete final checkpoint. A folder that only looks finished is
renamed aside (`<ratio>/.<run_id>.invalid-<n>`), never deleted; leftovers of interrupted
calls are removed only by a trainer alone in the folder, in its own ratio folders.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np

from heldout.errors import AuxArraysError
from heldout.release import layout as release
from heldout.release.aux_arrays import load_aux_arrays
from heldout.training.config import TrainingConfig
from heldout.training.events import RunKey
from heldout.training.locks import CLAIM_SUFFIX
from heldout.training.plan import run_subset
from heldout.training.run_record import has_run_record, run_record_problem

_RUN_TEMPORARY = re.compile(r"^\.[0-9]+\..+\.tmp$")  # release.write_run's temporaries
_RUN_CLAIM = re.compile(r"^\.[0-9]+" + re.escape(CLAIM_SUFFIX) + "$")
_RECORD_TEMPORARY = re.compile(r"^\.(experiment\.json|label_corruption\.npz)\..+\.tmp$")
_SHARD = re.compile(r"\.data-([0-9]{5})-of-([0-9]{5})$")

MISSING, FINISHED, INVALID = "missing", "finished", "invalid"
UNRECORDED = "unrecorded"  # finished-looking, but written before runs recorded their sizes


@dataclasses.dataclass(frozen=True)
class RunStates:
    """Where the runs of a config stand; `pending` includes the `invalid` ones."""

    finished: tuple[RunKey, ...]
    pending: tuple[RunKey, ...]
    invalid: dict[RunKey, str]  # why each one is not finished
    unrecorded: tuple[RunKey, ...] = ()  # invalid for want of a size record only


def _checkpoint_problem(checkpoint_dir: Path, epoch: int) -> str | None:
    index = checkpoint_dir / f"ckpt-{epoch}.index"
    if not index.is_file():
        return f"no final checkpoint {index.name} in {checkpoint_dir}"
    if index.stat().st_size == 0:
        return f"{index}: empty checkpoint index"
    shards = [
        (path, _SHARD.search(path.name)) for path in checkpoint_dir.glob(f"ckpt-{epoch}.data-*")
    ]
    counts = {int(match.group(2)) for _, match in shards if match}
    if len(counts) != 1:
        return f"{checkpoint_dir}: no (or mixed) data shards of ckpt-{epoch}"
    wanted = {f"{k:05d}" for k in range(counts.pop())}
    present = {match.group(1) for path, match in shards if match and path.stat().st_size > 0}
    if wanted - present:
        return f"{checkpoint_dir}: ckpt-{epoch} lacks data shards {sorted(wanted - present)}"
    return None


def run_state(
    run_dir: Path,
    subset_ratio: float,
    run_id: int,
    config: TrainingConfig,
    num_train: int,
    num_test: int,
) -> tuple[str, str | None]:
    """(MISSING | FINISHED | INVALID | UNRECORDED, why not finished) of one run folder.

    UNRECORDED: all is well but the size record is missing (`heldout.training.legacy_runs`
    can check such a run once and record it); otherwise it counts as INVALID.
    """
    if not run_dir.exists() and not run_dir.is_symlink():
        return MISSING, None
    if not run_dir.is_dir():
        return INVALID, f"{run_dir}: not a folder"
    try:
        aux = load_aux_arrays(run_dir / release.AUX_ARRAYS_FILE)
    except (AuxArraysError, OSError) as error:
        return INVALID, str(error)
    if (aux.num_train, aux.num_test) != (num_train, num_test):
        return INVALID, (
            f"{aux.source}: has {aux.num_train} training and {aux.num_test} test examples; "
            f"the data has {num_train} and {num_test}"
        )
    subset = run_subset(config.seed, subset_ratio, run_id, num_train)
    if not np.array_equal(np.sort(aux.index_train), subset):
        return INVALID, f"{aux.source}: trained on another subset than this experiment's run"
    problem = _checkpoint_problem(run_dir / release.CHECKPOINTS_DIR, config.epochs)
    if problem is None:  # then the sizes recorded when written: a truncation shows
        problem = run_record_problem(run_dir)
        if problem is not None and not has_run_record(run_dir):
            return UNRECORDED, problem
    if problem is not None:
        return INVALID, problem
    return FINISHED, None


def scan_runs(
    experiment_dir: Path, config: TrainingConfig, num_train: int, num_test: int
) -> RunStates:
    """The state of every run of `config` in `experiment_dir` (reads, changes nothing)."""
    finished, pending, invalid, unrecorded = [], [], {}, []
    for ratio in sorted(set(config.subset_ratios)):
        ratio_dir = experiment_dir / release.ratio_dir_name(ratio)
        for run_id in range(config.runs_per_ratio):
            state, why = run_state(
                ratio_dir / str(run_id), ratio, run_id, config, num_train, num_test
            )
            if state == FINISHED:
                finished.append((ratio, run_id))
            else:
                pending.append((ratio, run_id))
                if state in (INVALID, UNRECORDED):
                    invalid[(ratio, run_id)] = why
                if state == UNRECORDED:
                    unrecorded.append((ratio, run_id))
    return RunStates(tuple(finished), tuple(pending), invalid, tuple(unrecorded))


def set_aside(run_dir: Path) -> Path:
    """Renames a folder that is not a finished run to `.<run_id>.invalid-<n>` beside it.

    Call it holding the run's claim (no one else renames or writes that run meanwhile).

    Returns:
      The new path.
    """
    for n in range(1, 10_000):
        target = run_dir.with_name(f".{run_dir.name}.invalid-{n}")
        if not target.exists() and not target.is_symlink():
            run_dir.rename(target)
            return target
    raise FileExistsError(f"{run_dir}: too many folders set aside beside it; remove some")


def _is_trainer_ratio_dir(path: Path) -> bool:
    """A ratio folder as this trainer names them (`release.ratio_dir_name`), nothing else."""
    try:
        ratio = float(path.name)
    except ValueError:
        return False
    return 0.0 < ratio <= 1.0 and release.ratio_dir_name(ratio) == path.name and path.is_dir()


def remove_stale_temporaries(experiment_dir: Path) -> list[Path]:
    """Removes what interrupted trainers left behind; returns the temporaries removed.

    Call it only while holding the training lock exclusively (no other trainer can be
    writing): run temporaries and claim files in ratio folders, half-written record files
    in the experiment folder. The experiment's own lock files stay (removing a lock file
    races with a process about to lock it).
    """
    removed: list[Path] = []
    if not experiment_dir.is_dir():
        return removed
    for child in sorted(experiment_dir.iterdir()):
        if _RECORD_TEMPORARY.match(child.name) and child.is_file():
            child.unlink(missing_ok=True)
            removed.append(child)
        elif _is_trainer_ratio_dir(child):
            for entry in sorted(child.iterdir()):
                if _RUN_TEMPORARY.match(entry.name) and entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                    removed.append(entry)
                elif _RUN_CLAIM.match(entry.name) and entry.is_file():
                    entry.unlink(missing_ok=True)  # left by a killed trainer
    return removed
