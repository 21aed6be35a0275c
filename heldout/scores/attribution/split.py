"""The runs of one ratio split by run id into estimation and evaluation runs, disjointly.

Anything estimated from runs (the holdout-influence baseline, a user's own datamodel) may
see only the estimation runs: an evaluation run that reached an estimate would score the
estimate on its own training data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from heldout.errors import UsageError

__all__ = [
    "DEFAULT_EVALUATION_FRACTION",
    "DEFAULT_RATIO",
    "RunSplit",
    "parse_run_selection",
    "ratio_runs",
    "split_runs",
]

DEFAULT_EVALUATION_FRACTION = 0.5
DEFAULT_RATIO = 0.5  # TRAK's: a linear datamodel is fitted around one ratio


def ratio_runs(experiment, subset_ratio: float | None = None) -> tuple[float, list]:
    """The runs of one ratio, for the commands that read the runs of a single ratio.

    Args:
      experiment: the opened experiment (`heldout.release.layout.open_experiment`).
      subset_ratio: the ratio; None: 0.5, refused where the experiment has no 0.5 runs
        (attribution, exports and privacy all compare runs of one ratio).

    Returns:
      (the ratio, its runs in the order `runs_at` gives them).

    Raises:
      UsageError: no 0.5 ratio when none was asked for, or no runs at the ratio.
    """
    ratios = experiment.subset_ratios
    if subset_ratio is None:
        if not any(abs(r - DEFAULT_RATIO) < 1e-9 for r in ratios):
            raise UsageError(f"{experiment.path}: no 0.5 ratio; give --subset_ratio from {ratios}")
        subset_ratio = DEFAULT_RATIO
    runs = list(experiment.runs_at(subset_ratio))
    if not runs:
        raise UsageError(
            f"{experiment.path}: no runs of subset ratio {subset_ratio} (it has {ratios})"
        )
    return subset_ratio, runs


@dataclasses.dataclass(frozen=True)
class RunSplit:
    """Run ids, sorted: `estimation` for estimates, `evaluation` for scoring; disjoint."""

    estimation: tuple[int, ...]
    evaluation: tuple[int, ...]


def parse_run_selection(text: str | None, flag: str) -> float | tuple[int, ...] | None:
    """A flag's value as a fraction in (0, 1) or run ids ("3,5,10-12"); None if empty.

    Raises:
      UsageError: neither a fraction nor ids, named with the flag.
    """
    if text is None or not text.strip():
        return None
    text = text.strip()
    if "." in text and "," not in text:
        try:
            fraction = float(text)
        except ValueError:
            fraction = -1.0
        if not 0.0 < fraction < 1.0:
            raise UsageError(f"--{flag}={text}: a fraction must lie strictly between 0 and 1")
        return fraction
    ids: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise UsageError(
                f"--{flag}={text}: give run ids (3,5,10-12) or a fraction (0.5)"
            ) from None
        if first > last:
            raise UsageError(f"--{flag}={text}: empty range {part.strip()}")
        ids.update(range(first, last + 1))
    return tuple(sorted(ids))


def _pick(pool: Sequence[int], selection, flag: str, rng) -> tuple[int, ...]:
    if isinstance(selection, float):
        count = int(round(selection * len(pool)))
        if count == 0 or count == len(pool):
            raise UsageError(
                f"--{flag}={selection} of {len(pool)} runs leaves one side without runs"
            )
        return tuple(sorted(int(i) for i in rng.choice(pool, size=count, replace=False)))
    unknown = sorted(set(selection) - set(pool))
    if unknown:
        raise UsageError(f"--{flag}: run ids {unknown[:10]} are not among the runs of this ratio")
    return tuple(selection)


def split_runs(
    run_ids: Sequence[int],
    estimation: float | Sequence[int] | None = None,
    evaluation: float | Sequence[int] | None = None,
    seed: int = 0,
) -> RunSplit:
    """Estimation and evaluation runs, disjoint, by run id.

    Args:
      run_ids: the runs of one ratio.
      estimation, evaluation: each a fraction (drawn with `seed`) or run ids, or None.
        One given: the other is the rest. Both None: evaluation is a random
        `DEFAULT_EVALUATION_FRACTION`, estimation the rest. Both given: evaluation is
        chosen first, estimation from what is left (ids must not overlap).

    Returns:
      The `RunSplit`.

    Raises:
      UsageError: unknown ids, overlapping ids, or a side left without runs.
    """
    pool = tuple(sorted({int(i) for i in run_ids}))
    if len(pool) < 2:
        raise UsageError(f"{len(pool)} run(s) cannot be split into estimation and evaluation runs")
    rng = np.random.default_rng(seed)
    if evaluation is None and estimation is None:
        evaluation = DEFAULT_EVALUATION_FRACTION
    if evaluation is not None:
        evaluation_ids = _pick(pool, evaluation, "evaluation_runs", rng)
        rest = tuple(i for i in pool if i not in set(evaluation_ids))
        if estimation is None:
            estimation_ids = rest
        elif isinstance(estimation, float):
            estimation_ids = _pick(rest, estimation, "estimation_runs", rng) if rest else ()
        else:
            overlap = sorted(set(estimation) & set(evaluation_ids))
            if overlap:
                raise UsageError(
                    f"--estimation_runs and --evaluation_runs share run ids {overlap[:10]}"
                )
            estimation_ids = _pick(pool, estimation, "estimation_runs", rng)
    else:
        estimation_ids = _pick(pool, estimation, "estimation_runs", rng)
        evaluation_ids = tuple(i for i in pool if i not in set(estimation_ids))
    if not evaluation_ids or not estimation_ids:
        raise UsageError("the split leaves the estimation or the evaluation runs empty")
    return RunSplit(tuple(estimation_ids), tuple(evaluation_ids))
