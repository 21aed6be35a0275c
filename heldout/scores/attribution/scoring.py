"""An attribution and the built-in baselines scored by LDS on one split of the runs.

The runs' masks and outputs come through a reader (correctness from the aux arrays here;
margins from per-run outputs files plug in the same way). The estimation runs are read
for the baselines first; the evaluation runs only for scoring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from heldout.release.layout import Run
from heldout.release.reading import read_runs
from heldout.scores.attribution.baselines import holdout_influence, random_attribution
from heldout.scores.attribution.lds import Attribution, LdsResult, compute_lds
from heldout.scores.attribution.split import RunSplit

__all__ = [
    "CORRECTNESS",
    "MARGIN",
    "OutputsReader",
    "ScoredAttribution",
    "read_correctness",
    "score_attribution",
]

CORRECTNESS = "correctness"
MARGIN = "margin"
ATTRIBUTION = "attribution"
RANDOM = "random"

# runs -> (masks bool [R, n_train], outputs float32 [R, n_test]), rows in the runs' order
OutputsReader = Callable[[Sequence[Run]], tuple[np.ndarray, np.ndarray]]


def read_correctness(runs: Sequence[Run]) -> tuple[np.ndarray, np.ndarray]:
    """The runs' training masks and 0/1 test correctness, from their aux arrays.

    Raises:
      AuxArraysError: a run's file is unreadable or disagrees with the others, naming it.
    """
    masks, outputs = [], []
    for _, aux in read_runs(list(runs)):
        masks.append(aux.train_mask())
        outputs.append(aux.test_correctness().astype(np.float32))
    return np.stack(masks), np.stack(outputs)


@dataclasses.dataclass(frozen=True)
class ScoredAttribution:
    """LDS by method name (the attribution first, then the baselines), and the split."""

    results: dict[str, LdsResult]
    split: RunSplit
    output_kind: str


def score_attribution(
    attribution: Attribution,
    runs_by_id: Mapping[int, Run],
    split: RunSplit,
    read_outputs: OutputsReader = read_correctness,
    output_kind: str = CORRECTNESS,
    seed: int = 0,
) -> ScoredAttribution:
    """The LDS of `attribution` and of the baselines over the split's evaluation runs.

    Args:
      attribution: dense [n_test, n_train] or top-k, in the experiment's positions.
      runs_by_id: the runs of one ratio by run id.
      split: estimation and evaluation run ids (disjoint).
      read_outputs: reads masks and outputs of a list of runs.
      output_kind: `CORRECTNESS` or `MARGIN`, what `read_outputs` returns (names the
        holdout-influence baseline: binary or margin).
      seed: of the random baseline and of the bootstrap intervals.

    Returns:
      The `ScoredAttribution`.

    Raises:
      UsageError: shapes of the attribution and the runs disagree; what the reader raises.
    """
    estimation = read_outputs([runs_by_id[i] for i in split.estimation])
    holdout = holdout_influence(*estimation)
    del estimation
    masks, outputs = read_outputs([runs_by_id[i] for i in split.evaluation])
    num_test, num_train = outputs.shape[1], masks.shape[1]
    kind = "binary" if output_kind == CORRECTNESS else "margin"
    methods = {
        ATTRIBUTION: attribution,
        RANDOM: random_attribution(num_test, num_train, seed),
        f"holdout influence ({kind}, {len(split.estimation)} runs)": holdout,
    }
    results = {name: compute_lds(tau, masks, outputs, seed=seed) for name, tau in methods.items()}
    return ScoredAttribution(results, split, output_kind)
