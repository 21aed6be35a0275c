"""What a scoring asks for (`ScoreRequest`) and which runs it reads (`runs_to_read`).

One request object is passed by `score_experiment`, `score_on_cluster` and the CLI, so
the options are listed once. The request is checked against the experiment before any
run is read: hours of reading must not end in a usage error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from heldout.errors import ScoresError, UsageError
from heldout.release.layout import Experiment, Run, ratio_key
from heldout.release.reading import SplitSizeCheck

__all__ = [
    "DEFAULT_REQUEST",
    "DEFAULT_SCORE_RATIO",
    "SCORE_NAMES",
    "RunSelection",
    "ScoreRequest",
    "check_confidence",
    "default_score_ratio",
    "known_split_sizes",
    "runs_to_read",
]

SCORE_NAMES = ("cscore", "memorization", "influence", "influence_pairs")
DEFAULT_SCORE_RATIO = 0.7  # the ratio of the released influence and memorization estimates
_AT_ONE_RATIO = frozenset({"memorization", "influence", "influence_pairs"})


@dataclasses.dataclass(frozen=True)
class ScoreRequest:
    """Everything a scoring asks for; checked against the experiment by `runs_to_read`.

    Attributes:
      scores: any of `SCORE_NAMES`. C-scores read every ratio; memorization and influence
        only the runs at `subset_ratio`.
      subset_ratio: for memorization and influence; None: `default_score_ratio`.
      influence_topk: 0 for the dense influence matrix, else k per test example.
      backend: the influence backend (`heldout.scores.backends.registry.BACKENDS`; "auto"
        picks the fastest for the problem, and the result says which ran).
      confidence: e.g. 0.95 for intervals beside every estimate; None for none.
      fdr: for "influence_pairs": the false-discovery rate.
      min_memorization: for "influence_pairs": the memorization a pair's training example
        needs to be tested (None: any).
      skip_bad_runs: report and skip malformed runs instead of stopping at the first.
      influence_options: passed to the influence accumulator (tile and block sizes,
        `stream_dense`; `heldout.scores.influence.InfluenceAccumulator`).
    """

    scores: tuple[str, ...] = ("cscore", "memorization")
    subset_ratio: float | None = None
    influence_topk: int = 0
    backend: str = "auto"
    confidence: float | None = None
    fdr: float = 0.05
    min_memorization: float | None = None
    skip_bad_runs: bool = False
    influence_options: Mapping | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", tuple(self.scores))

    def replace(self, **changes) -> ScoreRequest:
        """A copy with `changes` (field name -> value)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """The request as JSON-able values (the provenance of a scores file)."""
        out = dataclasses.asdict(self)
        out["scores"] = list(self.scores)
        out["influence_options"] = dict(self.influence_options or {})
        return out


DEFAULT_REQUEST = ScoreRequest()  # C-scores and memorization, at the default ratio


def check_confidence(confidence: float) -> float:
    """`confidence` as a float in (0, 1); UsageError otherwise."""
    value = float(confidence)
    if not 0.0 < value < 1.0:
        raise UsageError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    return value


def default_score_ratio(subset_ratios) -> float:
    """0.7 (the released estimates' ratio) when present, else the largest ratio.

    Raises:
      ScoresError: no ratios.
    """
    if not subset_ratios:
        raise ScoresError("no subset ratios to choose from")
    for ratio in subset_ratios:
        if ratio_key(ratio) == ratio_key(DEFAULT_SCORE_RATIO):
            return ratio
    return max(subset_ratios)


@dataclasses.dataclass(frozen=True)
class RunSelection:
    """The runs a checked request reads, before any reading.

    Attributes:
      scores: the requested `SCORE_NAMES`.
      runs: the runs to read (every ratio for C-scores, else those at `score_ratio`).
      subset_ratios: the ratios reported.
      score_ratio: the ratio of memorization and influence (None if neither is asked).
      confidence: checked, or None.
    """

    scores: tuple[str, ...]
    runs: tuple[Run, ...]
    subset_ratios: tuple[float, ...]
    score_ratio: float | None
    confidence: float | None


def runs_to_read(experiment: Experiment, request: ScoreRequest) -> RunSelection:
    """Checks the request against the experiment and chooses the runs to read.

    Raises:
      ScoresError: unknown scores, or no runs at `request.subset_ratio`.
      UsageError: a confidence outside (0, 1).
    """
    scores, subset_ratio, confidence = request.scores, request.subset_ratio, request.confidence
    unknown = sorted(set(scores) - set(SCORE_NAMES))
    if unknown or not scores:
        raise ScoresError(f"unknown scores {unknown}; choose from {list(SCORE_NAMES)}")
    if confidence is not None:
        confidence = check_confidence(confidence)  # before hours of reading
    score_ratio = None
    if _AT_ONE_RATIO & set(scores):
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
    return RunSelection(tuple(scores), tuple(runs), tuple(ratios), score_ratio, confidence)


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
