"""What a scoring returns: the estimates, their intervals and pairs, and the whole result.

These types sit at the bottom of the score engine: the accumulators, the uncertainty
modules and the scores file all use them, and they import none of those. Where there is
no run to average over an estimate is NaN, never 0, and every estimate comes with the
counts behind it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from heldout.scores import file as keys

__all__ = [
    "CScores",
    "ExperimentScores",
    "Influence",
    "Memorization",
    "ScoreIntervals",
    "SignificantPairs",
]


class _WrittenByKey:
    """`arrays()` for an estimate whose fields go into the scores file as they are, each
    under its key (`_file_keys`: scores-file key -> field name, in file order)."""

    _file_keys: dict[str, str] = {}

    def arrays(self) -> dict[str, np.ndarray]:
        """The scores-file keys (`heldout.scores.file`) mapped to their arrays."""
        return {key: getattr(self, name) for key, name in self._file_keys.items()}


@dataclasses.dataclass(frozen=True)
class CScores(_WrittenByKey):
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

    _file_keys = {
        keys.CSCORE: "cscore",
        keys.CSCORE_RATIO_COUNT: "ratio_count",
        keys.CSCORE_BY_RATIO: "cscore_by_ratio",
        keys.CSCORE_COUNT_OUT_BY_RATIO: "heldout_count_by_ratio",
        keys.CSCORE_STDERR_BY_RATIO: "cscore_stderr_by_ratio",
    }


@dataclasses.dataclass(frozen=True)
class Memorization(_WrittenByKey):
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

    _file_keys = {
        keys.MEMORIZATION: "memorization",
        keys.MEMORIZATION_COUNT_IN: "count_in",
        keys.MEMORIZATION_COUNT_OUT: "count_out",
        keys.MEMORIZATION_STDERR: "stderr",
    }


@dataclasses.dataclass(frozen=True)
class Influence:
    """Influence estimates at one subset ratio; one of `matrix` or the top-k pair is set.

    Attributes:
      subset_ratio: the ratio of the runs used (None when not given).
      num_runs: R, runs accumulated.
      count_in / count_out: int32 [N]: runs with each training example in / held out;
        the estimate for column j averages count_in[j] and count_out[j] runs.
      matrix: float32 [N_test, N] (dense mode), NaN in columns with count_in or count_out 0.
      topk_index: int64 [N_test, k]: training examples, most influential first; -1 where
        fewer than k training examples have a defined (non-NaN) influence.
      topk_value: float32 [N_test, k]: their influence, NaN where the index is -1. "Most
        influential" means the largest (most helpful) influence, as in the published
        high-influence pairs; of equal values, the smaller training index comes first.
      backend: the backend that computed it (a registered name, never "auto").
      test_correct_count: int32 [N_test]: runs in which each test example was correct (c),
        where the backend kept it; not written to the scores file.
    """

    subset_ratio: float | None
    num_runs: int
    count_in: np.ndarray
    count_out: np.ndarray
    matrix: np.ndarray | None = None
    topk_index: np.ndarray | None = None
    topk_value: np.ndarray | None = None
    backend: str = "numpy"
    test_correct_count: np.ndarray | None = None

    @property
    def is_topk(self) -> bool:
        return self.topk_index is not None

    def arrays(self) -> dict[str, np.ndarray]:
        """The scores-file keys (`heldout.scores.file`) mapped to their arrays."""
        out = {
            keys.INFLUENCE_NUM_RUNS: np.int64(self.num_runs),
            keys.INFLUENCE_COUNT_IN: self.count_in,
            keys.INFLUENCE_COUNT_OUT: self.count_out,
            keys.INFLUENCE_BACKEND: np.asarray(self.backend),  # which ran (same result)
        }
        if self.is_topk:
            out[keys.INFLUENCE_TOPK_INDEX] = self.topk_index
            out[keys.INFLUENCE_TOPK_VALUE] = self.topk_value
        else:
            out[keys.INFLUENCE] = self.matrix
        return out


@dataclasses.dataclass(frozen=True)
class ScoreIntervals:
    """Intervals beside the estimates of an `ExperimentScores`.

    Attributes:
      confidence: the nominal coverage, e.g. 0.95.
      cscore_by_ratio_low / _high: float64 [S, N] (Wilson/Jeffreys), or None.
      cscore_low / _high: float64 [N] (Price-Bonett), or None.
      memorization_low / _high: float64 [N] (Mee's score interval), or None.
      influence_low / _high: float32, shaped like the dense matrix or the top-k values
        (Mee's or Newcombe's, by the number of runs), or None.
    """

    confidence: float
    cscore_by_ratio_low: np.ndarray | None = None
    cscore_by_ratio_high: np.ndarray | None = None
    cscore_low: np.ndarray | None = None
    cscore_high: np.ndarray | None = None
    memorization_low: np.ndarray | None = None
    memorization_high: np.ndarray | None = None
    influence_low: np.ndarray | None = None
    influence_high: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The scores-file keys (`heldout.scores.file`) mapped to their arrays."""
        out = {keys.CONFIDENCE: np.float64(self.confidence)}
        for name in keys.INTERVAL_ESTIMATES:
            low = getattr(self, f"{name}_low")
            if low is not None:
                out[keys.ci_low_key(name)] = low
                out[keys.ci_high_key(name)] = getattr(self, f"{name}_high")
        return out


@dataclasses.dataclass(frozen=True)
class SignificantPairs:
    """The influence pairs Benjamini-Hochberg selects at `fdr`, most significant first.

    Attributes:
      subset_ratio, num_runs: the runs tested.
      fdr: the false-discovery rate controlled.
      min_memorization: the family's memorization minimum, or None for every column.
      num_tests: m, pairs tested (test examples x training examples in the family with
        both counts positive).
      train_index, test_index: int64 [P].
      influence: float64 [P]: S / n_in - (c - S) / n_out, exactly.
      p_value: float64 [P]: Fisher's one-sided exact p (0 where below float64's range).
      q_value: float64 [P]: BH-adjusted p-values (each <= fdr).
      memorization: float64 [P]: of the training example, from the same runs.
    """

    subset_ratio: float | None
    num_runs: int
    fdr: float
    min_memorization: float | None
    num_tests: int
    train_index: np.ndarray
    test_index: np.ndarray
    influence: np.ndarray
    p_value: np.ndarray
    q_value: np.ndarray
    memorization: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """The scores-file keys (`heldout.scores.file`) mapped to their arrays."""
        minimum = np.nan if self.min_memorization is None else self.min_memorization
        return {
            keys.PAIRS_TRAIN_INDEX: self.train_index,
            keys.PAIRS_TEST_INDEX: self.test_index,
            keys.PAIRS_INFLUENCE: self.influence,
            keys.PAIRS_P_VALUE: self.p_value,
            keys.PAIRS_Q_VALUE: self.q_value,
            keys.PAIRS_MEMORIZATION: self.memorization,
            keys.PAIRS_FDR: np.float64(self.fdr),
            keys.PAIRS_MIN_MEMORIZATION: np.float64(minimum),
            keys.PAIRS_NUM_TESTS: np.int64(self.num_tests),
            keys.PAIRS_NUM_RUNS: np.int64(self.num_runs),
        }


@dataclasses.dataclass(frozen=True)
class ExperimentScores:
    """Everything `score_experiment` computed; `arrays()` is the content of the file.

    Attributes:
      experiment: its name.
      subset_ratios / num_runs_by_ratio: the ratios read and their good runs.
      score_subset_ratio: the ratio of memorization and influence (None if neither).
      cscores, memorization, influence: None where not requested.
      skipped: one message per bad run skipped (each names its file).
      intervals: confidence intervals of the estimates, or None.
      influence_pairs: the FDR-selected pairs, or None.
      provenance: what the scores are a result of (`heldout.scores.file.scores_provenance`),
        or None.
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
    influence_pairs: SignificantPairs | None = None
    provenance: dict | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The scores-file keys (`heldout.scores.file`) mapped to their arrays."""
        out = {
            keys.EXPERIMENT: np.asarray(self.experiment),
            keys.SUBSET_RATIOS: self.subset_ratios,
            keys.NUM_RUNS_BY_RATIO: self.num_runs_by_ratio,
        }
        if self.score_subset_ratio is not None:
            out[keys.SCORE_SUBSET_RATIO] = np.float64(self.score_subset_ratio)
        for estimate in (
            self.cscores,
            self.memorization,
            self.influence,
            self.intervals,
            self.influence_pairs,
        ):
            if estimate is not None:
                out.update(estimate.arrays())
        if self.provenance is not None:
            out[keys.PROVENANCE] = keys.provenance_array(self.provenance)
        return out
