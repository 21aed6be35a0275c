"""The runs of one ratio, one at a time: training mask, the attack statistic on the full
training split, and the aux arrays (for memorization and C-scores on the same runs).

The margin comes from each run's `outputs.npz` through the release's checked reader
(`read_outputs`: identity and aux arrays compared); correctness from the aux arrays alone.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence

import numpy as np

from heldout.errors import OutputsError, UsageError
from heldout.release.aux_arrays import AuxArrays
from heldout.release.layout import Experiment, Run
from heldout.release.outputs import outputs_path
from heldout.release.outputs_reading import read_outputs
from heldout.scores.privacy.attacks import CORRECTNESS, MARGIN, STATISTICS

__all__ = ["RunStatistic", "iter_run_statistics", "select_targets"]


@dataclasses.dataclass(frozen=True)
class RunStatistic:
    """One run: its id, bool mask [n] (trained on), float32 statistic [n], aux arrays."""

    run_id: int
    mask: np.ndarray
    statistic: np.ndarray
    aux: AuxArrays | None


def iter_run_statistics(
    experiment: Experiment,
    runs: Sequence[Run],
    statistic: str = MARGIN,
    outputs_dir: str | os.PathLike | None = None,
) -> Iterator[RunStatistic]:
    """Yields each run's `RunStatistic`, in the order given, one at a time.

    Args:
      experiment: the opened experiment the runs belong to.
      runs: the runs (one ratio).
      statistic: `MARGIN` (logit margin, from outputs.npz) or `CORRECTNESS` (aux arrays).
      outputs_dir: where a release's outputs were written; None: beside each run.

    Raises:
      OutputsError: a missing or mismatching outputs file, or non-finite margins; names it.
      UsageError: an unknown statistic.
    """
    if statistic not in STATISTICS:
        raise UsageError(f"unknown statistic {statistic!r}; use one of {list(STATISTICS)}")
    for run in runs:
        aux = run.load_aux()
        if statistic == CORRECTNESS:
            values = aux.train_correctness().astype(np.float32)
        else:
            _, _, stacked = read_outputs(
                experiment,
                run.subset_ratio,
                outputs_dir=outputs_dir,
                kind="logit_margin",
                split="train",
                run_ids=[run.run_id],
            )
            values = stacked[0]
            if not np.all(np.isfinite(values)):
                path = outputs_path(run.path, experiment.path, outputs_dir)
                raise OutputsError(f"{path}: NaN or infinite logit margins on the training split")
        yield RunStatistic(run.run_id, aux.train_mask(), values, aux)


def select_targets(run_ids: Sequence[int], targets: str | int, seed: int = 0) -> tuple[int, ...]:
    """The target runs: a count drawn from `run_ids` with `seed`, or ids ("3,5,10-12").

    Args:
      run_ids: the runs of the ratio.
      targets: an int or a plain integer string: that many runs; anything with "," or
        "-": those ids (one id alone: "7,").
      seed: of the draw.

    Returns:
      Sorted target run ids.

    Raises:
      UsageError: more targets than runs, fewer than 1, or ids not among the runs.
    """
    pool = sorted(int(i) for i in run_ids)
    text = str(targets).strip()
    if text.isdigit():
        count = int(text)
        if count < 1 or count > len(pool):
            raise UsageError(
                f"--targets={count}: the ratio has {len(pool)} runs; give 1 to {len(pool)}"
            )
        rng = np.random.default_rng(seed)
        return tuple(sorted(int(i) for i in rng.choice(pool, size=count, replace=False)))
    ids: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        try:
            ids.update(range(int(low), int(high or low) + 1))
        except ValueError:
            raise UsageError(
                f"--targets={text}: give a count (16) or run ids (3,5,10-12)"
            ) from None
    unknown = sorted(ids - set(pool))
    if not ids or unknown:
        raise UsageError(
            f"--targets={text}: run ids {unknown[:10]} are not among the {len(pool)} runs "
            "of this ratio"
            if unknown
            else f"--targets={text}: no run ids"
        )
    return tuple(sorted(ids))
