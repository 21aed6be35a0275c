"""Streaming statistics over runs: C-scores, memorization and influence, with counts.

Definitions (../DESIGN.md), for a training example j and the runs of subset ratio s:
- C-score at s: mean correctness of j over the runs in which j was held out.
- integral C-score: mean of the per-ratio C-scores over the ratios where j was held out
  at least once (a `nanmean`; `ratio_count` says how many ratios entered it). An example
  never held out at some ratio thus averages fewer ratios; with the release's run counts
  that only happens at the largest ratios and for few examples.
- memorization at s: P(correct | j trained) - P(correct | j held out).
- influence (see `heldout.scores.influence`).
Where there is no run to average over the estimate is NaN, never 0, and every estimate
comes with the counts behind it. The binomial standard error sqrt(p (1 - p) / n) is 0
when all n runs agree, which understates the noise for small n: read it with the count.

Only integer counts are accumulated, run by run, so memory does not grow with the number
of runs and results do not depend on the order of runs or of the evaluation orders inside
each file. Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from heldout._core.atomic import write_npz_atomic
from heldout.errors import InconsistentRunError, ScoresError
from heldout.release.aux_arrays import AuxArrays, AuxArraysError
from heldout.release.layout import Experiment, ratio_key
from heldout.release.reading import ProgressCallback, RunLike, SplitSizeCheck, read_runs
from heldout.scores.influence import (
    DenseInfluenceAccumulator,
    Influence,
    TopKInfluenceAccumulator,
    compute_influence,
    influence_accumulator,
)
from heldout.scores.uncertainty.intervals import (
    CorrectTestCounts,
    ScoreIntervals,
    check_confidence,
    score_intervals,
)
from heldout.scores.uncertainty.pairs import InfluencePairs, InfluencePairsAccumulator

__all__ = [
    "CScores",
    "DenseInfluenceAccumulator",
    "ExperimentScores",
    "Influence",
    "Memorization",
    "SCORE_NAMES",
    "ScoreAccumulator",
    "TopKInfluenceAccumulator",
    "compute_cscores",
    "compute_influence",
    "compute_memorization",
    "default_score_ratio",
    "influence_accumulator",
    "save_scores",
    "score_experiment",
]

SCORE_NAMES = ("cscore", "memorization", "influence", "influence_pairs")
DEFAULT_SCORE_RATIO = 0.7  # the ratio of the released influence and memorization estimates


@dataclasses.dataclass(frozen=True)
class CScores:
    """C-scores of every training example, per subset ratio and integrated over ratios.

    Attributes:
      subset_ratios: float64 [S], increasing; the rows of the `*_by_ratio` arrays.
      num_runs_by_ratio: int64 [S].
      cscore: float64 [N]: mean of the per-ratio C-scores that are defined; NaN if none.
      ratio_count: int32 [N]: how many ratios entered `cscore`.
      cscore_by_ratio: float64 [S, N]: NaN where the example was never held out.
      heldout_count_by_ratio: int32 [S, N]: runs behind each per-ratio C-score.
      cscore_stderr_by_ratio: float64 [S, N]: binomial standard error, NaN where count 0.
    """

    subset_ratios: np.ndarray
    num_runs_by_ratio: np.ndarray
    cscore: np.ndarray
    ratio_count: np.ndarray
    cscore_by_ratio: np.ndarray
    heldout_count_by_ratio: np.ndarray
    cscore_stderr_by_ratio: np.ndarray


@dataclasses.dataclass(frozen=True)
class Memorization:
    """Memorization of every training example at one subset ratio.

    Attributes:
      subset_ratio, num_runs: the runs used.
      memorization: float64 [N]: p_correct_in - p_correct_out; NaN where either is.
      count_in / count_out: int32 [N]: runs with the example trained on / held out.
      p_correct_in / p_correct_out: float64 [N]: NaN where the count is 0.
      stderr: float64 [N]: sqrt(p_in (1 - p_in) / n_in + p_out (1 - p_out) / n_out).
    """

    subset_ratio: float | None
    num_runs: int
    memorization: np.ndarray
    count_in: np.ndarray
    count_out: np.ndarray
    p_correct_in: np.ndarray
    p_correct_out: np.ndarray
    stderr: np.ndarray


def _mean_and_stderr(successes: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """successes / count and sqrt(p (1 - p) / count), both NaN where count is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = successes / count.astype(np.float64)
        stderr = np.sqrt(mean * (1.0 - mean) / count)
    return mean, stderr


@dataclasses.dataclass
class _RatioCounts:
    """Sufficient statistics of the training split at one subset ratio."""

    num_runs: int
    heldout_count: np.ndarray  # int32 [N]
    heldout_correct: np.ndarray  # int32 [N]
    trained_correct: np.ndarray  # int32 [N]; trained count = num_runs - heldout_count

    @classmethod
    def zeros(cls, num_train: int) -> _RatioCounts:
        return cls(0, *(np.zeros(num_train, dtype=np.int32) for _ in range(3)))


class ScoreAccumulator:
    """Counts, per subset ratio, what C-scores and memorization need; add runs one by one.

    Args:
      subset_ratios: ratios to report even if no run of them gets added (their rows are
        then NaN with count 0, e.g. when every run of a ratio was skipped as bad).
      per_example: False to count only runs (and check their N): what influence alone
        needs of these counts. Its C-scores and memorization are then NaN, never to be
        reported; skipping the per-example sums saves ~0.1-0.4 ms a run of 20 000.
    """

    def __init__(self, subset_ratios: Sequence[float] = (), per_example: bool = True):
        self._declared = {ratio_key(ratio) for ratio in subset_ratios}
        self._counts: dict[float, _RatioCounts] = {}
        self.num_train: int | None = None
        self.per_example = per_example

    @property
    def subset_ratios(self) -> tuple[float, ...]:
        return tuple(sorted(self._declared | set(self._counts)))

    def add(self, subset_ratio: float, aux: AuxArrays) -> None:
        if self.num_train is None:
            self.num_train = aux.num_train
        elif aux.num_train != self.num_train:
            raise InconsistentRunError(
                f"{aux.source}: has N={aux.num_train} training examples; earlier runs have "
                f"N={self.num_train}"
            )
        key = ratio_key(subset_ratio)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = _RatioCounts.zeros(self.num_train)
        counts.num_runs += 1
        if not self.per_example:
            return
        mask, correct = aux.train_mask(), aux.train_correctness()
        heldout = ~mask
        counts.heldout_count += heldout
        counts.heldout_correct += correct & heldout
        counts.trained_correct += correct & mask

    def merge(self, other: ScoreAccumulator) -> ScoreAccumulator:
        """Adds the runs `other` counted to this one's (for partial counts of shares of
        runs, read by several workers); integer sums, so the order never matters.

        Raises:
          InconsistentRunError: the two counted runs of different training-set sizes.
        """
        if other.per_example != self.per_example:
            raise ScoresError(
                "partial counts with and without per-example sums cannot be added "
                "(count them with the same scores requested)"
            )
        if other.num_train is not None:
            if self.num_train is None:
                self.num_train = other.num_train
            elif other.num_train != self.num_train:
                raise InconsistentRunError(
                    f"partial counts of N={other.num_train} and N={self.num_train} "
                    "training examples cannot be added"
                )
        self._declared |= other._declared
        for key, theirs in other._counts.items():
            mine = self._counts.get(key)
            if mine is None:
                mine = self._counts[key] = _RatioCounts.zeros(self.num_train)
            mine.num_runs += theirs.num_runs
            mine.heldout_count += theirs.heldout_count
            mine.heldout_correct += theirs.heldout_correct
            mine.trained_correct += theirs.trained_correct
        return self

    def _counts_at(self, subset_ratio: float) -> _RatioCounts:
        if self.num_train is None:
            raise ScoresError("no runs were added")
        key = ratio_key(subset_ratio)
        if key not in self._counts and key not in self._declared:
            raise ScoresError(
                f"no runs at subset ratio {subset_ratio}; ratios present: "
                f"{list(self.subset_ratios)}"
            )
        return self._counts.get(key) or _RatioCounts.zeros(self.num_train)

    def cscores(self) -> CScores:
        if self.num_train is None:
            raise ScoresError("no runs were added")
        ratios = self.subset_ratios
        per_ratio = [self._counts_at(ratio) for ratio in ratios]
        heldout_count = np.stack([counts.heldout_count for counts in per_ratio])
        heldout_correct = np.stack([counts.heldout_correct for counts in per_ratio])
        by_ratio, stderr = _mean_and_stderr(heldout_correct, heldout_count)
        defined = ~np.isnan(by_ratio)
        ratio_count = defined.sum(axis=0).astype(np.int32)
        with np.errstate(divide="ignore", invalid="ignore"):
            cscore = np.where(defined, by_ratio, 0.0).sum(axis=0) / ratio_count
        return CScores(
            subset_ratios=np.asarray(ratios, dtype=np.float64),
            num_runs_by_ratio=np.asarray([c.num_runs for c in per_ratio], dtype=np.int64),
            cscore=cscore,
            ratio_count=ratio_count,
            cscore_by_ratio=by_ratio,
            heldout_count_by_ratio=heldout_count,
            cscore_stderr_by_ratio=stderr,
        )

    def memorization(self, subset_ratio: float) -> Memorization:
        counts = self._counts_at(subset_ratio)
        count_in = (counts.num_runs - counts.heldout_count).astype(np.int32)
        p_in, stderr_in = _mean_and_stderr(counts.trained_correct, count_in)
        p_out, stderr_out = _mean_and_stderr(counts.heldout_correct, counts.heldout_count)
        return Memorization(
            subset_ratio=float(subset_ratio),
            num_runs=counts.num_runs,
            memorization=p_in - p_out,
            count_in=count_in,
            count_out=counts.heldout_count.copy(),
            p_correct_in=p_in,
            p_correct_out=p_out,
            stderr=np.sqrt(stderr_in**2 + stderr_out**2),
        )


def compute_cscores(runs: Iterable[tuple[float, AuxArrays]]) -> CScores:
    """C-scores from `(subset_ratio, aux)` pairs, streamed."""
    accumulator = ScoreAccumulator()
    for subset_ratio, aux in runs:
        accumulator.add(subset_ratio, aux)
    return accumulator.cscores()


def compute_memorization(
    runs: Iterable[AuxArrays], subset_ratio: float | None = None
) -> Memorization:
    """Memorization from runs of one subset ratio (`subset_ratio` is only recorded)."""
    accumulator = ScoreAccumulator()
    label = 0.0 if subset_ratio is None else subset_ratio
    for aux in runs:
        accumulator.add(label, aux)
    result = accumulator.memorization(label)
    return dataclasses.replace(result, subset_ratio=subset_ratio)


# ---------------------------------------------------------------------------------------
# Whole experiments and the scores file.


@dataclasses.dataclass(frozen=True)
class ExperimentScores:
    """Everything `score_experiment` computed; `arrays()` is the content of the file.

    Attributes:
      experiment: its name.
      subset_ratios / num_runs_by_ratio: the ratios read and their good runs.
      score_subset_ratio: the ratio of memorization and influence (None if neither).
      cscores, memorization, influence: None where not requested.
      skipped: one message per bad run skipped (each names its file).
      intervals: confidence intervals of the estimates (`heldout.scores.uncertainty`), or None.
      influence_pairs: the FDR-selected pairs (`heldout.scores.uncertainty.pairs`), or None.
    """

    experiment: str
    subset_ratios: np.ndarray
    num_runs_by_ratio: np.ndarray
    score_subset_ratio: float | None
    cscores: CScores | None
    memorization: Memorization | None
    influence: Influence | None
    skipped: tuple[str, ...] = ()
    intervals: ScoreIntervals | None = None
    influence_pairs: InfluencePairs | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The output file's keys (documented in the README) mapped to their arrays."""
        out = {
            "experiment": np.asarray(self.experiment),
            "subset_ratios": self.subset_ratios,
            "num_runs_by_ratio": self.num_runs_by_ratio,
        }
        if self.score_subset_ratio is not None:
            out["score_subset_ratio"] = np.float64(self.score_subset_ratio)
        if self.cscores is not None:
            c = self.cscores
            out.update(
                cscore=c.cscore,
                cscore_ratio_count=c.ratio_count,
                cscore_by_ratio=c.cscore_by_ratio,
                heldout_count_by_ratio=c.heldout_count_by_ratio,
                cscore_stderr_by_ratio=c.cscore_stderr_by_ratio,
            )
        if self.memorization is not None:
            m = self.memorization
            out.update(
                memorization=m.memorization,
                memorization_count_in=m.count_in,
                memorization_count_out=m.count_out,
                memorization_stderr=m.stderr,
            )
        if self.influence is not None:
            i = self.influence
            out.update(
                influence_num_runs=np.int64(i.num_runs),
                influence_count_in=i.count_in,
                influence_count_out=i.count_out,
                influence_backend=np.asarray(i.backend),  # which computed it (same result)
            )
            if i.is_topk:
                out.update(influence_topk_index=i.topk_index, influence_topk_value=i.topk_value)
            else:
                out["influence"] = i.matrix
        if self.intervals is not None:
            out.update(self.intervals.arrays())
        if self.influence_pairs is not None:
            out.update(self.influence_pairs.arrays())
        return out


def default_score_ratio(subset_ratios: Sequence[float]) -> float:
    """0.7 (the released estimates' ratio) when present, else the largest ratio."""
    if not subset_ratios:
        raise ScoresError("no subset ratios to choose from")
    for ratio in subset_ratios:
        if ratio_key(ratio) == ratio_key(DEFAULT_SCORE_RATIO):
            return ratio
    return max(subset_ratios)


def score_experiment(
    experiment: Experiment,
    scores: Sequence[str] = ("cscore", "memorization"),
    subset_ratio: float | None = None,
    influence_topk: int = 0,
    workers: int | None = None,
    skip_bad_runs: bool = False,
    on_bad_run: Callable[[RunLike, AuxArraysError], None] | None = None,
    progress: bool | ProgressCallback = False,
    influence_options: dict | None = None,
    backend: str = "auto",
    confidence: float | None = None,
    fdr: float = 0.05,
    min_memorization: float | None = None,
) -> ExperimentScores:
    """Reads the runs an experiment's requested scores need, once, and computes them.

    Args:
      experiment: from `heldout.release.layout.open_experiment`.
      scores: any of `SCORE_NAMES`. C-scores read every ratio; memorization and influence
        only the runs at `subset_ratio`.
      subset_ratio: for memorization and influence; default `default_score_ratio`.
      influence_topk: 0 for the dense matrix, else k per test example.
      workers, skip_bad_runs, on_bad_run, progress: see `heldout.release.reading.read_runs`.
      influence_options: passed to the influence accumulator (tile and block sizes).
      backend: the influence backend (`heldout.scores.influence.BACKENDS`; "auto" picks the
        fastest for the problem, and the result's `influence.backend` says which ran).
      confidence: e.g. 0.95 for intervals beside every estimate (`heldout.scores.uncertainty`);
        None for none.
      fdr, min_memorization: for "influence_pairs": the false-discovery rate, and the
        memorization a pair's training example needs to be tested (None: any).
    """
    plan = plan_scores(experiment, scores, subset_ratio, confidence)
    state = ScoreState(
        plan,
        len(experiment.runs_at(plan.score_ratio)) if plan.score_ratio is not None else 0,
        influence_topk=influence_topk,
        backend=backend,
        influence_options=influence_options,
        fdr=fdr,
        min_memorization=min_memorization,
    )

    skipped: list[str] = []

    def record_bad_run(run: RunLike, error: AuxArraysError) -> None:
        skipped.append(str(error))
        if on_bad_run is not None:
            on_bad_run(run, error)

    for run, aux in read_runs(
        plan.runs,
        workers=workers,
        skip_bad_runs=skip_bad_runs,
        on_bad_run=record_bad_run,
        progress=progress,
        size_check=known_split_sizes(experiment),
    ):
        state.counts.add(run.subset_ratio, aux)
        if state.at_score_ratio(run.subset_ratio):
            state.add_at_score_ratio(aux)
    return state.result(experiment, skipped)


@dataclasses.dataclass(frozen=True)
class ScorePlan:
    """What a `score_experiment` call reads: checked before any reading.

    Attributes:
      scores: the requested `SCORE_NAMES`.
      runs: the runs to read (every ratio for C-scores, else those at `score_ratio`).
      subset_ratios: the ratios reported.
      score_ratio: the ratio of memorization and influence (None if neither is asked).
      confidence: checked, or None.
    """

    scores: tuple[str, ...]
    runs: tuple
    subset_ratios: tuple[float, ...]
    score_ratio: float | None
    confidence: float | None


def plan_scores(
    experiment: Experiment,
    scores: Sequence[str],
    subset_ratio: float | None = None,
    confidence: float | None = None,
) -> ScorePlan:
    """Checks the request against the experiment and chooses the runs to read.

    Raises:
      ScoresError: unknown scores, or no runs at `subset_ratio`.
      UsageError: a confidence outside (0, 1).
    """
    unknown = sorted(set(scores) - set(SCORE_NAMES))
    if unknown or not scores:
        raise ScoresError(f"unknown scores {unknown}; choose from {list(SCORE_NAMES)}")
    if confidence is not None:
        confidence = check_confidence(confidence)  # before hours of reading
    at_one_ratio = {"memorization", "influence", "influence_pairs"} & set(scores)
    score_ratio = None
    if at_one_ratio:
        present = experiment.subset_ratios
        if subset_ratio is None:
            score_ratio = default_score_ratio(present)
        else:
            matching = [r for r in present if ratio_key(r) == ratio_key(subset_ratio)]
            if not matching:
                raise ScoresError(
                    f"{experiment.path}: no runs at subset ratio {subset_ratio}; "
                    f"ratios present: {list(present)}"
                )
            score_ratio = matching[0]
    if "cscore" in scores:
        runs = list(experiment.runs)
        ratios = experiment.subset_ratios
    else:
        runs = experiment.runs_at(score_ratio)
        ratios = (score_ratio,)
    return ScorePlan(tuple(scores), tuple(runs), tuple(ratios), score_ratio, confidence)


class ScoreState:
    """The accumulators of one scoring: counts of every ratio, and at the score ratio the
    influence, the test counts of its intervals and the influence pairs.

    Args:
      plan: from `plan_scores`.
      runs_at_score_ratio: how many runs the influence will get (sizes its storage).
      influence_topk, backend, influence_options, fdr, min_memorization: see
        `score_experiment`.
    """

    def __init__(
        self,
        plan: ScorePlan,
        runs_at_score_ratio: int,
        influence_topk: int = 0,
        backend: str = "auto",
        influence_options: dict | None = None,
        fdr: float = 0.05,
        min_memorization: float | None = None,
    ):
        self.plan = plan
        self.counts = ScoreAccumulator(
            plan.subset_ratios, per_example=bool({"cscore", "memorization"} & set(plan.scores))
        )
        self.influence = None
        if "influence" in plan.scores:
            self.influence = influence_accumulator(
                influence_topk,
                plan.score_ratio,
                backend,
                runs_at_score_ratio,
                **(influence_options or {}),
            )
        # Beside influence: what its intervals need, and the FDR-selected pairs.
        self.extras = []
        if plan.confidence is not None and self.influence is not None:
            self.extras.append(CorrectTestCounts())
        if "influence_pairs" in plan.scores:
            self.extras.append(InfluencePairsAccumulator(plan.score_ratio, fdr, min_memorization))

    @property
    def needs_score_ratio_runs(self) -> bool:
        """Whether any accumulator but the counts takes runs (influence or its extras)."""
        return self.influence is not None or bool(self.extras)

    def at_score_ratio(self, subset_ratio: float) -> bool:
        score_ratio = self.plan.score_ratio
        return score_ratio is not None and ratio_key(subset_ratio) == ratio_key(score_ratio)

    def add_at_score_ratio(self, aux) -> None:
        """Adds a run of the score ratio to the influence and its extras (not the counts)."""
        if self.influence is not None:
            self.influence.add(aux)
        for extra in self.extras:
            extra.add(aux)

    def result(self, experiment: Experiment, skipped: Sequence[str]) -> ExperimentScores:
        """The scores; the accumulators are spent afterwards.

        Raises:
          ScoresError: no run could be read.
        """
        counts, plan = self.counts, self.plan
        if counts.num_train is None:
            raise ScoresError(f"{experiment.path}: no readable runs ({len(skipped)} skipped)")
        cscores = counts.cscores()  # cheap; also gives the run counts per ratio
        result = ExperimentScores(
            experiment=experiment.name,
            subset_ratios=cscores.subset_ratios,
            num_runs_by_ratio=cscores.num_runs_by_ratio,
            score_subset_ratio=plan.score_ratio,
            cscores=cscores if "cscore" in plan.scores else None,
            memorization=(
                counts.memorization(plan.score_ratio) if "memorization" in plan.scores else None
            ),
            influence=self.influence.result() if self.influence is not None else None,
            skipped=tuple(skipped),
        )
        return _with_uncertainty(result, plan.confidence, self.extras)


def _with_uncertainty(
    result: ExperimentScores, confidence: float | None, extras: list
) -> ExperimentScores:
    """`result` with its intervals and influence pairs, where they were asked for."""
    correct = next((e.counts for e in extras if isinstance(e, CorrectTestCounts)), None)
    pairs = next((e for e in extras if isinstance(e, InfluencePairsAccumulator)), None)
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


def known_split_sizes(experiment: Experiment) -> SplitSizeCheck | None:
    """A check against the split sizes the experiment declares, if it declares them.

    Released experiments declare them in the registry, experiments trained here in
    `experiment.json`; otherwise None (the reader then uses the first run, or the majority
    when bad runs are skipped).
    """
    meta = experiment.meta
    if meta.num_train is None and meta.num_test is None:
        return None
    where = experiment.path / "experiment.json"
    source = str(where) if where.is_file() else f"the registry entry of {meta.name}"
    return SplitSizeCheck(meta.num_train, meta.num_test, reference=source)


def save_scores(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Writes an `.npz` under a temporary name, renamed into place only when complete."""
    write_npz_atomic(path, arrays)
