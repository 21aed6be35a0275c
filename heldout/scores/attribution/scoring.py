"""An attribution and the built-in baselines scored by LDS on one split of the runs.

The runs' masks and outputs come through a reader: 0/1 correctness from the aux arrays,
or logit margins from the runs' `outputs.npz` (`margin_reader`). The estimation runs are read
for the baselines first; the evaluation runs only for scoring.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from heldout.errors import UsageError
from heldout.release.layout import Run, open_experiment
from heldout.release.outputs_reading import read_outputs
from heldout.release.reading import read_runs
from heldout.scores.attribution.baselines import (
    holdout_influence,
    holdout_influence_on_support,
    random_attribution,
    random_on_support,
)
from heldout.scores.attribution.ceiling import Ceiling, compute_ceiling
from heldout.scores.attribution.lds import Attribution, LdsResult, SparseAttribution, compute_lds
from heldout.scores.attribution.split import RunSplit

__all__ = [
    "CORRECTNESS",
    "MARGIN",
    "OutputsReader",
    "ScoredAttribution",
    "lds_arrays",
    "lds_table",
    "margin_reader",
    "read_correctness",
    "score_attribution",
]

CORRECTNESS = "correctness"
MARGIN = "margin"
ATTRIBUTION = "attribution"
RANDOM = "random"
DENSE_BASELINE_BYTES = 1 << 30  # a top-k attribution larger than this densely: baselines on
# its own support (a dense [n_test, n_train] would not fit at ImageNet size)

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


def margin_reader(outputs_dir: str | os.PathLike | None = None) -> OutputsReader:
    """A reader of the runs' training masks and test logit margins (`outputs.npz`).

    Args:
      outputs_dir: where a release's outputs were written (`heldout evaluate --outputs
        --outputs_dir`), in the release's layout; None: beside each run (our training).

    Returns:
      An `OutputsReader`; each file is checked against its run's identity and aux arrays
      (or the ratio's pack is read where it is current: `heldout.release.outputs_pack`).
    """

    opened: dict = {}  # the experiment, listed once for the estimation and evaluation reads

    def read(runs: Sequence[Run]) -> tuple[np.ndarray, np.ndarray]:
        runs = list(runs)
        folder = runs[0].experiment_dir
        if folder not in opened:
            opened[folder] = open_experiment(folder)
        _, masks, margins = read_outputs(
            opened[folder],
            runs[0].subset_ratio,
            outputs_dir=outputs_dir,
            kind="logit_margin",
            split="test",
            run_ids=[run.run_id for run in runs],
        )
        return masks, margins

    return read


@dataclasses.dataclass(frozen=True)
class ScoredAttribution:
    """LDS by method name (the attribution first, then the baselines), the split, and the
    ceiling (None when not computed); `extra_run_ids`: the estimation runs behind each
    extra baseline (last-layer TRAK's checkpoints)."""

    results: dict[str, LdsResult]
    split: RunSplit
    output_kind: str
    ceiling: Ceiling | None = None
    extra_run_ids: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)


def score_attribution(
    attribution: Attribution,
    runs_by_id: Mapping[int, Run],
    split: RunSplit,
    read_outputs: OutputsReader = read_correctness,
    output_kind: str = CORRECTNESS,
    seed: int = 0,
    extra: Mapping[str, Attribution] | None = None,
    ceiling: bool = True,
) -> ScoredAttribution:
    """The LDS of `attribution` and of the baselines over the split's evaluation runs.

    Args:
      attribution: dense [n_test, n_train] or top-k, in the experiment's positions. A
        top-k one of more than `DENSE_BASELINE_BYTES` as a dense float32 gets its baselines
        on its own indices (named "... on top-k"), so nothing [n_test, n_train] is made.
      runs_by_id: the runs of one ratio by run id.
      split: estimation and evaluation run ids (disjoint).
      read_outputs: reads masks and outputs of a list of runs.
      output_kind: `CORRECTNESS` or `MARGIN`, what `read_outputs` returns (names the
        holdout-influence baseline: binary or margin).
      seed: of the random baseline and of the bootstrap intervals.
      extra: more baselines by name, estimated by the caller from estimation runs only
        (last-layer TRAK); one with `run_ids` has them recorded.
      ceiling: also score the holdout influence of the first m estimation runs, m on
        `ceiling.ceiling_ladder` (not for a top-k attribution whose baselines are on its
        support: the ceiling's factors are [runs, n_train]).

    Returns:
      The `ScoredAttribution`.

    Raises:
      UsageError: shapes of the attribution and the runs disagree; an extra baseline
        estimated from an evaluation run; what the reader raises.
    """
    extra_run_ids = {
        name: tuple(int(i) for i in getattr(tau, "run_ids", ()))
        for name, tau in (extra or {}).items()
    }
    reached = sorted({i for ids in extra_run_ids.values() for i in ids} & set(split.evaluation))
    if reached:
        raise UsageError(f"evaluation runs {reached[:10]} reached an estimate (leakage)")
    estimation = read_outputs([runs_by_id[i] for i in split.estimation])
    on_support = (
        isinstance(attribution, SparseAttribution)
        and 4 * attribution.shape[0] * attribution.shape[1] > DENSE_BASELINE_BYTES
    )
    kind = "binary" if output_kind == CORRECTNESS else "margin"
    holdout_name = f"holdout influence ({kind}, {len(split.estimation)} runs)"
    if on_support:
        holdout = holdout_influence_on_support(*estimation, attribution)
        random, holdout_name = random_on_support(attribution, seed), holdout_name + " on top-k"
    else:
        holdout = holdout_influence(*estimation)
    ceiling = ceiling and not on_support  # its factors are [runs, n_train]: too large there
    if not ceiling:
        del estimation
    masks, outputs = read_outputs([runs_by_id[i] for i in split.evaluation])
    num_test, num_train = outputs.shape[1], masks.shape[1]
    if not on_support:
        random = random_attribution(num_test, num_train, seed)
    methods = {
        ATTRIBUTION: attribution,
        RANDOM + (" on top-k" if on_support else ""): random,
        holdout_name: holdout,
        **(extra or {}),
    }
    del random, holdout
    results = {}
    for name in list(methods):
        results[name] = compute_lds(methods.pop(name), masks, outputs, seed=seed)
    found = compute_ceiling(*estimation, masks, outputs, seed=seed) if ceiling else None
    return ScoredAttribution(results, split, output_kind, found, extra_run_ids)


def lds_arrays(scored: ScoredAttribution, provenance: dict) -> dict[str, np.ndarray]:
    """What `heldout attribution` writes: the attribution's LDS, the split, the baselines.

    Keys: `lds_per_test` [n_test] (NaN where undefined), `lds`, `lds_ci_low`,
    `lds_ci_high`, `num_test` (test examples with a defined LDS), `num_runs`,
    `evaluation_run_ids`, `estimation_run_ids`, `output_kind`, `baseline_names` with
    `baseline_lds`, `baseline_ci_low`, `baseline_ci_high`, `baseline_num_test` in the
    same order, `trak_run_ids` (the estimation runs whose checkpoints last-layer TRAK
    read; empty without it), the ceiling as `ceiling_runs` (estimation runs of each rung)
    with `ceiling_lds`, `ceiling_ci_low`, `ceiling_ci_high`, `ceiling_num_test` (empty
    without it), and `provenance` (JSON).
    """
    own = scored.results[ATTRIBUTION]
    baselines = [(name, r) for name, r in scored.results.items() if name != ATTRIBUTION]
    return {
        "lds_per_test": own.per_test,
        "lds": np.float64(own.lds),
        "lds_ci_low": np.float64(own.ci_low),
        "lds_ci_high": np.float64(own.ci_high),
        "num_test": np.int64(own.num_test),
        "num_runs": np.int64(own.num_runs),
        "evaluation_run_ids": np.asarray(scored.split.evaluation, dtype=np.int64),
        "estimation_run_ids": np.asarray(scored.split.estimation, dtype=np.int64),
        "output_kind": np.asarray(scored.output_kind),
        "baseline_names": np.asarray([name for name, _ in baselines]),
        "baseline_lds": np.asarray([r.lds for _, r in baselines], dtype=np.float64),
        "baseline_ci_low": np.asarray([r.ci_low for _, r in baselines], dtype=np.float64),
        "baseline_ci_high": np.asarray([r.ci_high for _, r in baselines], dtype=np.float64),
        "baseline_num_test": np.asarray([r.num_test for _, r in baselines], dtype=np.int64),
        "trak_run_ids": np.asarray(
            sorted({i for ids in scored.extra_run_ids.values() for i in ids}), dtype=np.int64
        ),
        **ceiling_arrays(scored.ceiling),
        "provenance": np.asarray(json.dumps(provenance, sort_keys=True)),
    }


def ceiling_arrays(ceiling: Ceiling | None) -> dict[str, np.ndarray]:
    """`ceiling_runs`, `ceiling_lds`, `ceiling_ci_low`, `ceiling_ci_high`,
    `ceiling_num_test` of a ceiling (empty arrays for None)."""
    results = ceiling.results if ceiling is not None else ()
    return {
        "ceiling_runs": np.asarray(ceiling.runs if ceiling else (), dtype=np.int64),
        "ceiling_lds": np.asarray([r.lds for r in results], dtype=np.float64),
        "ceiling_ci_low": np.asarray([r.ci_low for r in results], dtype=np.float64),
        "ceiling_ci_high": np.asarray([r.ci_high for r in results], dtype=np.float64),
        "ceiling_num_test": np.asarray([r.num_test for r in results], dtype=np.int64),
    }


def lds_table(scored: ScoredAttribution) -> str:
    """The LDS of the attribution and each baseline as one text table."""
    noisier = " (0/1 per run: the noisier variant)" if scored.output_kind == CORRECTNESS else ""
    rows = list(scored.results.items())
    if scored.ceiling is not None:
        kind = "binary" if scored.output_kind == CORRECTNESS else "margin"
        rows += [
            (f"ceiling: holdout influence ({kind}, {m} runs)", r)
            for m, r in zip(scored.ceiling.runs, scored.ceiling.results, strict=True)
        ]
    width = max(48, *(len(name) for name, _ in rows))
    lines = [
        f"LDS over {len(scored.split.evaluation)} evaluation runs, outputs: "
        f"{scored.output_kind}{noisier}",
        f"{'method':<{width}} {'LDS':>7}  {'95% interval':<17} {'test':>6}",
    ]
    for name, r in rows:
        interval = f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
        lines.append(f"{name:<{width}} {r.lds:>+7.3f}  {interval:<17} {r.num_test:>6}")
    return "\n".join(lines)
