"""The scores file (`scores.npz`): its keys as constants, its provenance, save and load.

Every writer and reader of the file names its keys through these constants, so a key is
spelled once. Counts follow one rule, `<score>_count_in` / `<score>_count_out` (runs with
the example trained on / held out); files written before that rule still load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from heldout._core.atomic import write_npz_atomic
from heldout._core.npz import load_npz
from heldout._core.provenance import parse_provenance, provenance_for
from heldout.errors import ScoresError, ScoresFileError

# What was read.
EXPERIMENT = "experiment"
SUBSET_RATIOS = "subset_ratios"
NUM_RUNS_BY_RATIO = "num_runs_by_ratio"
SCORE_SUBSET_RATIO = "score_subset_ratio"
PROVENANCE = "provenance"

# C-scores.
CSCORE = "cscore"
CSCORE_RATIO_COUNT = "cscore_ratio_count"  # ratios behind `cscore` (not a run count)
CSCORE_BY_RATIO = "cscore_by_ratio"
CSCORE_COUNT_OUT_BY_RATIO = "cscore_count_out_by_ratio"
CSCORE_STDERR_BY_RATIO = "cscore_stderr_by_ratio"

# Memorization.
MEMORIZATION = "memorization"
MEMORIZATION_COUNT_IN = "memorization_count_in"
MEMORIZATION_COUNT_OUT = "memorization_count_out"
MEMORIZATION_STDERR = "memorization_stderr"

# Influence.
INFLUENCE = "influence"
INFLUENCE_NUM_RUNS = "influence_num_runs"
INFLUENCE_COUNT_IN = "influence_count_in"
INFLUENCE_COUNT_OUT = "influence_count_out"
INFLUENCE_BACKEND = "influence_backend"
INFLUENCE_TOPK_INDEX = "influence_topk_index"
INFLUENCE_TOPK_VALUE = "influence_topk_value"

# Intervals: `<estimate>_ci_low` / `<estimate>_ci_high` for these estimates.
CONFIDENCE = "confidence"
INTERVAL_ESTIMATES = (CSCORE_BY_RATIO, CSCORE, MEMORIZATION, INFLUENCE)
CI_LOW_SUFFIX = "_ci_low"
CI_HIGH_SUFFIX = "_ci_high"

# Significant influence pairs.
PAIRS_TRAIN_INDEX = "pairs_train_index"
PAIRS_TEST_INDEX = "pairs_test_index"
PAIRS_INFLUENCE = "pairs_influence"
PAIRS_P_VALUE = "pairs_p_value"
PAIRS_Q_VALUE = "pairs_q_value"
PAIRS_MEMORIZATION = "pairs_memorization"
PAIRS_FDR = "pairs_fdr"
PAIRS_MIN_MEMORIZATION = "pairs_min_memorization"
PAIRS_NUM_TESTS = "pairs_num_tests"
PAIRS_NUM_RUNS = "pairs_num_runs"

# Soft C-score.
SOFT_CSCORE = "soft_cscore"
SOFT_CSCORE_COUNT_OUT = "soft_cscore_count_out"

# Keys of files written before the count rule -> today's keys.
RENAMED_KEYS = {
    "heldout_count_by_ratio": CSCORE_COUNT_OUT_BY_RATIO,
    "soft_cscore_count": SOFT_CSCORE_COUNT_OUT,
}


def ci_low_key(estimate: str) -> str:
    """The key of an estimate's lower interval limit (`cscore` -> `cscore_ci_low`)."""
    return estimate + CI_LOW_SUFFIX


def ci_high_key(estimate: str) -> str:
    """The key of an estimate's upper interval limit."""
    return estimate + CI_HIGH_SUFFIX


def scores_provenance(experiment, runs: Sequence, request: dict) -> dict:
    """The provenance record of a scoring: what was read, with which options.

    Args:
      experiment: the `heldout.release.layout.Experiment` scored.
      runs: the runs whose arrays entered the scores (`Run`s: ratio and run id).
      request: the options, e.g. `ScoreRequest.as_dict()`.

    Returns:
      A JSON-able dict (`heldout._core.provenance.provenance_for`).
    """
    meta = experiment.meta
    return provenance_for(
        experiment={
            "path": str(os.path.abspath(experiment.path)),
            "name": experiment.name,
            "dataset": meta.dataset,
            "index_order": meta.index_order,
            "n_train": meta.num_train,
            "n_test": meta.num_test,
        },
        runs=[{"subset_ratio": float(run.subset_ratio), "run_id": int(run.run_id)} for run in runs],
        options=request,
    )


def provenance_array(provenance: dict) -> np.ndarray:
    """The provenance as the file stores it: a 0-d string array of JSON."""
    return np.asarray(json.dumps(provenance, sort_keys=True))


def save_scores(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Writes a scores file under a temporary name, renamed into place only when complete.

    Args:
      path: the `.npz` file to write (replaced if present).
      arrays: key -> array, e.g. `ExperimentScores.arrays()`; an array may be a
        `heldout._core.row_blocks.RowBlocks`, computed while it is written.

    Raises:
      OSError: the file could not be written (nothing is left at `path` then).
    """
    write_npz_atomic(path, arrays)


def load_scores(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of a scores file, keys of older files renamed to today's.

    Args:
      path: a file written by `save_scores`.

    Returns:
      key -> array; `provenance` stays the JSON string (`load_provenance` decodes it).

    Raises:
      ScoresError: the file is missing or not a readable `.npz`; ScoresFileError: a
        per-example estimate that is infinite or out of range (`check_score_values`).
    """
    arrays = load_npz(path, error=ScoresError, what="a scores file")
    for old, new in RENAMED_KEYS.items():
        if old in arrays and new not in arrays:
            arrays[new] = arrays.pop(old)
    check_score_values(arrays, os.fspath(path))
    return arrays


# The range of each per-example estimate; NaN marks one that is undefined. A C-score is a
# probability, memorization a difference of two.
VALUE_RANGES = {
    CSCORE: (0.0, 1.0),
    CSCORE_BY_RATIO: (0.0, 1.0),
    SOFT_CSCORE: (0.0, 1.0),
    MEMORIZATION: (-1.0, 1.0),
}


def check_score_values(arrays: dict[str, np.ndarray], source: str) -> None:
    """Refuses per-example estimates (`VALUE_RANGES`) that are infinite or out of range.

    A value no estimate can take means a corrupted or hand-edited file; plotted, tabled
    or ranked, it would pass without a word. (The influence matrix is not scanned: it may
    be larger than memory allows twice.)

    Args:
      arrays: a scores file's arrays.
      source: the file, first in the message.

    Raises:
      ScoresFileError: naming the file, the key, how many values and the first entries.
    """
    for key, (low, high) in VALUE_RANGES.items():
        if key not in arrays or not np.issubdtype(np.asarray(arrays[key]).dtype, np.floating):
            continue
        values = np.asarray(arrays[key], dtype=np.float64)
        flat = values.ravel()
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(~((flat >= low) & (flat <= high)) & ~np.isnan(flat))
        if bad.size:
            entries = [tuple(int(i) for i in np.unravel_index(k, values.shape)) for k in bad[:5]]
            raise ScoresFileError(
                f"{source}: {key} holds {bad.size} value(s) that are not finite numbers in "
                f"[{low:g}, {high:g}] (or NaN), e.g. {flat[bad[:5]].tolist()} at "
                f"{entries if values.ndim > 1 else bad[:5].tolist()}"
            )


def load_provenance(arrays: dict[str, np.ndarray], source: str = "a scores file") -> dict | None:
    """The provenance record of loaded scores, or None for files written without one.

    Raises:
      ScoresFileError (a ValueError): `provenance` that is not a JSON object, or is
        nested deeper than Python's recursion limit; the message starts with `source`.
    """
    if PROVENANCE not in arrays:
        return None
    return parse_provenance(arrays[PROVENANCE], source, ScoresFileError)
