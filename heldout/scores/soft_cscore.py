"""Out-of-sample probabilities from the heldout runs themselves, and the soft C-score.

Runs trained with `record_heldout_probs` write `heldout_probs.npz` (`index` int64 [K],
`probs` float16 [K, C]: the final softmax on the examples they held out). The soft
C-score of an example is the mean, over the runs that held it out, of the held-out
probability of its label; NaN where no run held it out.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from heldout._core.atomic import write_npz_atomic
from heldout._core.npz import load_npz
from heldout.errors import ScoresError
from heldout.scores import file as keys

HELDOUT_PROBS_FILE = "heldout_probs.npz"
_KEYS = ("index", "probs")


def write_heldout_probs(run_dir: str | os.PathLike, index: np.ndarray, probs: np.ndarray) -> Path:
    """Writes `<run_dir>/heldout_probs.npz` (atomic): `index` int64, `probs` float16."""
    path = Path(run_dir) / HELDOUT_PROBS_FILE
    write_npz_atomic(
        path,
        {"index": np.asarray(index, np.int64), "probs": np.asarray(probs, np.float16)},
    )
    return path


def heldout_softmax(
    predict_logits: Callable[[np.ndarray], np.ndarray],
    train_images: np.ndarray,
    heldout_index: np.ndarray,
    num_classes: int,
    chunk: int = 8192,
) -> np.ndarray:
    """float16 [K, C] softmax of `predict_logits` (uint8 images -> logits) on the held-out rows."""
    out = []
    for start in range(0, heldout_index.size, chunk):
        logits = np.asarray(predict_logits(train_images[heldout_index[start : start + chunk]]))
        logits = logits.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        out.append((p / p.sum(axis=1, keepdims=True)).astype(np.float16))
    if not out:
        return np.zeros((0, num_classes), np.float16)
    return np.concatenate(out)


@dataclasses.dataclass(frozen=True)
class OutOfSampleProbs:
    """The mean held-out softmax of every training example over the runs that held it out.

    Attributes:
      probs: float64 [N, C]; NaN rows where no run held the example out.
      count: int64 [N], the runs behind each row.
      num_runs: runs read.
    """

    probs: np.ndarray
    count: np.ndarray
    num_runs: int

    def soft_cscore(self, labels: np.ndarray) -> np.ndarray:
        """float64 [N]: the mean held-out probability of each example's given label."""
        labels = np.asarray(labels)
        if labels.shape != (self.probs.shape[0],):
            raise ScoresError(
                f"{labels.size} labels for {self.probs.shape[0]} examples' probabilities"
            )
        return self.probs[np.arange(labels.size), labels]


def load_heldout_probs(run_dir: str | os.PathLike, num_train: int) -> tuple[np.ndarray, np.ndarray]:
    """(index, probs) of one run, checked.

    Raises:
      ScoresError: the file is missing (the message names the run folder and the flag
        that writes it), or malformed.
    """
    path = Path(run_dir) / HELDOUT_PROBS_FILE
    if not path.is_file():
        raise ScoresError(
            f"{run_dir}: no {HELDOUT_PROBS_FILE} (train the experiment with "
            "--record_heldout_probs; runs trained without it need retraining for the soft "
            "C-score)"
        )
    arrays = load_npz(path, keys=_KEYS, error=ScoresError, what="a heldout_probs file")
    index, probs = arrays["index"], arrays["probs"]
    if (
        index.ndim != 1
        or probs.ndim != 2
        or probs.shape[0] != index.size
        or not np.issubdtype(index.dtype, np.integer)
        or (index.size and (index.min() < 0 or index.max() >= num_train))
        or np.unique(index).size != index.size
    ):
        raise ScoresError(
            f"{path}: expected unique int index [K] in 0..{num_train - 1} and probs [K, C], "
            f"got index {index.dtype} {index.shape} and probs {probs.shape}"
        )
    return index.astype(np.int64), probs


def out_of_sample_probs(run_dirs: Sequence[str | os.PathLike], num_train: int) -> OutOfSampleProbs:
    """The mean held-out softmax over `run_dirs` (see the module docstring).

    Raises:
      ScoresError: some run lacks its file (named), files disagree on the classes, or no
        runs were given.
    """
    if not run_dirs:
        raise ScoresError("no runs to read held-out probabilities from")
    total, count = None, np.zeros(num_train, np.int64)
    for run_dir in run_dirs:
        index, probs = load_heldout_probs(run_dir, num_train)
        if total is None:
            total = np.zeros((num_train, probs.shape[1]), np.float64)
        elif probs.shape[1] != total.shape[1]:
            raise ScoresError(
                f"{Path(run_dir) / HELDOUT_PROBS_FILE}: {probs.shape[1]} classes, earlier runs "
                f"{total.shape[1]}"
            )
        total[index] += probs
        count[index] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count[:, None]
    return OutOfSampleProbs(mean, count, len(run_dirs))


def experiment_soft_cscores(experiment, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The soft C-score of every training example of `experiment`, as output-file arrays.

    Reads every run's `heldout_probs.npz`. The labels come from the caller (the dataset is
    read a layer above this TensorFlow-free engine).

    Args:
      experiment: a `heldout.release.layout.Experiment`.
      labels: the labels the runs were trained on, in index order (corrupted where the
        experiment says so: `heldout.datasets.relabeled.experiment_labels`).

    Returns:
      `soft_cscore` float64 [N] (NaN where never held out) and `soft_cscore_count_out`
      int64 [N], the runs behind each value (keys: `heldout.scores.file`).

    Raises:
      ScoresError: a run without its file (the message names the run folder), or no runs.
    """
    runs = list(experiment.runs)
    num_train = experiment.meta.num_train
    if not runs:
        raise ScoresError(f"{experiment.path}: no runs")
    if num_train is None:
        raise ScoresError(f"{experiment.path}: the experiment does not record num_train")
    probs = out_of_sample_probs([run.path for run in runs], num_train)
    return {keys.SOFT_CSCORE: probs.soft_cscore(labels), keys.SOFT_CSCORE_COUNT_OUT: probs.count}
