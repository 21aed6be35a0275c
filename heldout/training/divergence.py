"""Runs whose loss or weights stopped being finite: never written as finished runs.

A model of NaNs evaluates to constant predictions and would be scored like any other run.
The trainer keeps such a model aside instead (`<ratio>/.<run_id>.diverged-<n>/`, hidden
from the release reader), reports it, and the run stays pending: the command says so.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from heldout._core.atomic import commit_dir, make_temp_dir
from heldout.release import layout as release
from heldout.training.events import RunDiverged


def all_finite(arrays: Iterable[np.ndarray]) -> bool:
    """Whether every value of every array is finite (no NaN, no infinity)."""
    return all(bool(np.all(np.isfinite(np.asarray(array)))) for array in arrays)


def loss_problem(loss: float, epoch: int) -> str | None:
    """'loss became nan at epoch 3' when the epoch's loss is not finite; else None."""
    if np.isfinite(loss):
        return None
    return f"loss became {float(loss)} at epoch {epoch}"


def keep_diverged(
    ratio_dir: Path,
    subset_ratio: float,
    run_id: int,
    reason: str,
    write_checkpoint: Callable[[Path], None],
) -> RunDiverged:
    """Writes the diverged model to `<ratio_dir>/.<run_id>.diverged-<n>/checkpoints/`.

    Call it holding the run's claim. Nothing is left behind when writing fails.

    Returns:
      The event that names the run, the reason and where its model is kept.
    """
    ratio_dir.mkdir(parents=True, exist_ok=True)
    n = 1
    while (ratio_dir / f".{run_id}.diverged-{n}").exists():
        n += 1
    final = ratio_dir / f".{run_id}.diverged-{n}"
    tmp = make_temp_dir(ratio_dir, prefix=f"{final.name}.")
    try:
        (tmp / release.CHECKPOINTS_DIR).mkdir()
        write_checkpoint(tmp / release.CHECKPOINTS_DIR)
        commit_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RunDiverged(float(subset_ratio), int(run_id), ratio_dir / str(run_id), final, reason)
