"""`score_experiment`: reads the runs a `ScoreRequest` needs, once, and computes its scores.

`ScoreState` holds the accumulators of one scoring (counts of every ratio; at the score
ratio the influence, the test counts of its intervals and the significant pairs), so the
Dask fan-out (`heldout.scores.fanout`) feeds the very same ones. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from heldout.errors import ScoresError
from heldout.release.aux_arrays import AuxArrays, AuxArraysError
from heldout.release.layout import Experiment, ratio_key
from heldout.release.reading import ProgressCallback, RunLike, read_runs
from heldout.scores.counts import ScoreAccumulator
from heldout.scores.file import scores_provenance
from heldout.scores.influence import InfluencePlan, influence_accumulator, plan_influence
from heldout.scores.request import (
    DEFAULT_REQUEST,
    RunSelection,
    ScoreRequest,
    known_split_sizes,
    runs_to_read,
)
from heldout.scores.results import ExperimentScores
from heldout.scores.uncertainty.intervals import CorrectTestCounts, score_intervals
from heldout.scores.uncertainty.pairs import SignificantPairsAccumulator

__all__ = ["ScoreState", "plan_experiment_influence", "score_experiment"]


def score_experiment(
    experiment: Experiment,
    request: ScoreRequest = DEFAULT_REQUEST,
    workers: int | None = None,
    on_bad_run: Callable[[RunLike, AuxArraysError], None] | None = None,
    progress: bool | ProgressCallback = False,
) -> ExperimentScores:
    """Reads the runs an experiment's requested scores need, once, and computes them.

    Args:
      experiment: from `heldout.release.layout.open_experiment`.
      request: what to compute (`ScoreRequest`: scores, ratio, influence backend, ...).
      workers, on_bad_run, progress: see `heldout.release.reading.read_runs`.

    Returns:
      The `ExperimentScores`; its `arrays()` are the content of a scores file, with the
      provenance of the request and of the runs read.

    Raises:
      ScoresError: unknown scores, no runs at the ratio, or no readable run.
      UsageError: a bad option (confidence, FDR, backend), before any reading.
      AuxArraysError: a bad run, unless `request.skip_bad_runs`.
    """
    selection = runs_to_read(experiment, request)
    state = ScoreState(selection, request, _runs_at_score_ratio(experiment, selection))
    skipped: list[str] = []
    skipped_runs: list[RunLike] = []

    def record_bad_run(run: RunLike, error: AuxArraysError) -> None:
        skipped.append(str(error))
        skipped_runs.append(run)
        if on_bad_run is not None:
            on_bad_run(run, error)

    for run, aux in read_runs(
        selection.runs,
        workers=workers,
        skip_bad_runs=request.skip_bad_runs,
        on_bad_run=record_bad_run,
        progress=progress,
        size_check=known_split_sizes(experiment),
    ):
        state.counts.add(run.subset_ratio, aux)
        if state.at_score_ratio(run.subset_ratio):
            state.add_at_score_ratio(aux)
    return state.result(experiment, skipped, skipped_runs)


def plan_experiment_influence(
    experiment: Experiment, request: ScoreRequest
) -> InfluencePlan | None:
    """The influence backend a scoring will use and its expected peak memory, before reading.

    The split sizes come from the experiment's record, else from its first readable run.

    Args:
      experiment: from `heldout.release.layout.open_experiment`.
      request: the scoring (`ScoreRequest`).

    Returns:
      The plan, or None when no influence is asked for or no run can tell the sizes.

    Raises:
      ScoresError, UsageError: as `score_experiment`, before any reading.
    """
    selection = runs_to_read(experiment, request)
    if "influence" not in selection.scores:
        return None
    runs = experiment.runs_at(selection.score_ratio)
    num_train, num_test = experiment.meta.num_train, experiment.meta.num_test
    for run in runs[:3] if num_train is None or num_test is None else ():
        try:
            aux = run.load_aux()
        except AuxArraysError:
            continue  # the scoring reports it (or skips it)
        num_train, num_test = aux.num_train, aux.num_test
        break
    if not runs or num_train is None or num_test is None:
        return None
    return plan_influence(
        len(runs),
        num_train,
        num_test,
        request.influence_topk,
        request.backend,
        intervals=selection.confidence is not None,
        **(request.influence_options or {}),
    )


def _runs_at_score_ratio(experiment: Experiment, selection: RunSelection) -> int:
    if selection.score_ratio is None:
        return 0
    return len(experiment.runs_at(selection.score_ratio))


class ScoreState:
    """The accumulators of one scoring: counts of every ratio, and at the score ratio the
    influence, the test counts of its intervals and the significant pairs.

    Args:
      selection: from `runs_to_read`.
      request: the request it was selected for.
      runs_at_score_ratio: how many runs the influence will get (sizes its storage).
    """

    def __init__(self, selection: RunSelection, request: ScoreRequest, runs_at_score_ratio: int):
        self.selection, self.request = selection, request
        self.counts = ScoreAccumulator(
            selection.subset_ratios,
            per_example=bool({"cscore", "memorization"} & set(selection.scores)),
        )
        self.influence = None
        if "influence" in selection.scores:
            self.influence = influence_accumulator(
                request.influence_topk,
                selection.score_ratio,
                request.backend,
                runs_at_score_ratio,
                **(request.influence_options or {}),
            )
        # Beside influence: what its intervals need, and the FDR-selected pairs.
        self.extras = []
        if selection.confidence is not None and self.influence is not None:
            self.extras.append(CorrectTestCounts())
        if "influence_pairs" in selection.scores:
            self.extras.append(
                SignificantPairsAccumulator(
                    selection.score_ratio, request.fdr, request.min_memorization
                )
            )

    @property
    def needs_score_ratio_runs(self) -> bool:
        """Whether any accumulator but the counts takes runs (influence or its extras)."""
        return self.influence is not None or bool(self.extras)

    def at_score_ratio(self, subset_ratio: float) -> bool:
        score_ratio = self.selection.score_ratio
        return score_ratio is not None and ratio_key(subset_ratio) == ratio_key(score_ratio)

    def add_at_score_ratio(self, aux: AuxArrays) -> None:
        """Adds a run of the score ratio to the influence and its extras (not the counts)."""
        if self.influence is not None:
            self.influence.add(aux)
        for extra in self.extras:
            extra.add(aux)

    def result(
        self, experiment: Experiment, skipped: Sequence[str], skipped_runs: Sequence = ()
    ) -> ExperimentScores:
        """The scores; the accumulators are spent afterwards.

        Args:
          experiment: the experiment read.
          skipped: one message per bad run skipped.
          skipped_runs: those runs (left out of the provenance's runs), where known.

        Raises:
          ScoresError: no run could be read.
        """
        counts, selection = self.counts, self.selection
        if counts.num_train is None:
            raise ScoresError(f"{experiment.path}: no readable runs ({len(skipped)} skipped)")
        cscores = counts.cscores()  # cheap; also gives the run counts per ratio
        result = ExperimentScores(
            experiment=experiment.name,
            subset_ratios=cscores.subset_ratios,
            num_runs_by_ratio=cscores.num_runs_by_ratio,
            score_subset_ratio=selection.score_ratio,
            cscores=cscores if "cscore" in selection.scores else None,
            memorization=(
                counts.memorization(selection.score_ratio)
                if "memorization" in selection.scores
                else None
            ),
            influence=self.influence.result() if self.influence is not None else None,
            skipped=tuple(skipped),
        )
        result = _with_uncertainty(result, selection.confidence, self.extras)
        left_out = {_run_file(run) for run in skipped_runs}
        used = [run for run in selection.runs if _run_file(run) not in left_out]
        provenance = scores_provenance(experiment, used, self.request.as_dict())
        return dataclasses.replace(result, provenance=provenance)


def _run_file(run: RunLike) -> str:
    """The aux-array file of a run (a `Run`, or its file's path)."""
    return str(getattr(run, "aux_path", run))


def _with_uncertainty(
    result: ExperimentScores, confidence: float | None, extras: list
) -> ExperimentScores:
    """`result` with its intervals and significant pairs, where they were asked for."""
    correct = next((e.counts for e in extras if isinstance(e, CorrectTestCounts)), None)
    pairs = next((e for e in extras if isinstance(e, SignificantPairsAccumulator)), None)
    intervals = None
    if confidence is not None:
        intervals = score_intervals(
            confidence, result.cscores, result.memorization, result.influence, correct
        )
    return dataclasses.replace(
        result,
        intervals=intervals,
        influence_pairs=pairs.result() if pairs is not None else None,
    )
