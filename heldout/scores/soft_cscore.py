"""Out-of-sample probabilities from the heldout runs themselves, and the soft C-score.

One run's `heldout_probs.npz` (`index` int64 [K], `probs` float16 [K, C]: its softmax on the
examples it held out, plus `provenance`) is written by training (`record_heldout_probs`)
and by `heldout evaluate --outputs=heldout_probs`; one reader serves both. The soft C-score
of an example is the mean held-out probability of its label; NaN where no run held it out.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from heldout._core.atomic import write_npz_atomic
from heldout._core.npz import load_npz
from heldout._core.provenance import parse_provenance, provenance_for
from heldout.errors import ScoresError
from heldout.release.outputs import outputs_path
from heldout.scores import file as keys

HELDOUT_PROBS_FILE = "heldout_probs.npz"
_KEYS = ("index", "probs")


def heldout_probs_path(run_path: str | os.PathLike, experiment_dir=None, outputs_dir=None) -> Path:
    """Where a run's `heldout_probs.npz` lives, beside its `outputs.npz`.

    Args:
      run_path: the run's folder.
      experiment_dir: its experiment's folder (needed with `outputs_dir`).
      outputs_dir: the outputs folder of `heldout evaluate`; None: beside the aux arrays,
        where training writes it.

    Returns:
      `<run_path>/heldout_probs.npz` or `<outputs_dir>/<ratio>/<run_id>/heldout_probs.npz`.
    """
    return outputs_path(run_path, experiment_dir, outputs_dir).with_name(HELDOUT_PROBS_FILE)


def write_heldout_probs(
    run_dir: str | os.PathLike, index: np.ndarray, probs: np.ndarray, **provenance
) -> Path:
    """Writes `<run_dir>/heldout_probs.npz` atomically (temporary name, fsync, rename).

    Args:
      run_dir: the folder (a run's, or its place in an outputs folder; created if missing).
      index: int [K], the held-out training positions.
      probs: [K, C] softmax rows, stored as float16.
      provenance: recorded as JSON with the toolkit version, e.g. the checkpoint
        `identity` that `heldout evaluate` compares on resume.

    Returns:
      The written file.

    Raises:
      UnsafeWriteError: the file cannot be written (a link in the way, a full disk).
    """
    path = Path(run_dir) / HELDOUT_PROBS_FILE
    record = json.dumps(provenance_for(**provenance), sort_keys=True)
    write_npz_atomic(
        path,
        {
            "index": np.asarray(index, np.int64),
            "probs": np.asarray(probs, np.float16),
            "provenance": np.array(record),
        },
    )
    return path


def softmax_float16(logits: np.ndarray) -> np.ndarray:
    """float16 [K, C] softmax of float logits [K, C], computed in float64 (max subtracted)."""
    logits = np.asarray(logits).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float16)


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
        out.append(softmax_float16(logits))
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

    def pred_probs(self) -> np.ndarray:
        """float32 [N, C]: each row normalized to sum to 1 again (the float16 softmax rows
        do not, quite), as cleanlab's `pred_probs` wants; NaN rows where never held out."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.probs / self.probs.sum(axis=1, keepdims=True)).astype(np.float32)


class HeldoutProbsAccumulator:
    """Sums and counts of held-out softmax rows, one run at a time: memory [N, C] float64,
    however many runs (never all runs' probabilities at once).

    Args:
      num_train: N, the size of the full training split.
    """

    def __init__(self, num_train: int):
        self.num_train = int(num_train)
        self.total: np.ndarray | None = None
        self.count = np.zeros(self.num_train, np.int64)
        self.num_runs = 0

    def add(self, index: np.ndarray, probs: np.ndarray, source: str = "<memory>") -> None:
        """Adds one run's held-out rows (`index` unique, in [0, N)).

        Raises:
          ScoresError: `probs` with another class count than earlier runs; names `source`.
        """
        if self.total is None:
            self.total = np.zeros((self.num_train, probs.shape[1]), np.float64)
        elif probs.shape[1] != self.total.shape[1]:
            raise ScoresError(
                f"{source}: {probs.shape[1]} classes, earlier runs {self.total.shape[1]}"
            )
        self.total[index] += probs
        self.count[index] += 1
        self.num_runs += 1

    def result(self) -> OutOfSampleProbs:
        """The means (NaN rows where never held out).

        Raises:
          ScoresError: no run was added.
        """
        if self.total is None:
            raise ScoresError("no runs to read held-out probabilities from")
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.total / self.count[:, None]
        return OutOfSampleProbs(mean, self.count.copy(), self.num_runs)


@dataclasses.dataclass(frozen=True)
class HeldoutProbs:
    """One run's `heldout_probs.npz`: `index` int64 [K], `probs` float16 [K, C], and its
    `provenance` ({} in files written before it was recorded)."""

    index: np.ndarray
    probs: np.ndarray
    provenance: dict


def load_heldout_probs_file(
    path: str | os.PathLike,
    num_train: int,
    expect_identity: dict | None = None,
    expect_index: np.ndarray | None = None,
) -> HeldoutProbs:
    """Reads and checks one `heldout_probs.npz` (never unpickles).

    Args:
      path: the file.
      num_train: N; every index must lie in [0, N), each once.
      expect_identity: the checkpoint identity its provenance must carry
        (`heldout.release.outputs.run_identity`); None: not checked.
      expect_index: the run's held-out examples, ascending (from its aux arrays); the
        file's `index` must hold exactly these; None: not checked.

    Returns:
      The checked arrays.

    Raises:
      ScoresError: the file is malformed, from another checkpoint, or covers other examples
        than the run held out; the message starts with the file.
    """
    arrays = load_npz(path, keys=_KEYS, error=ScoresError, what="a heldout_probs file")
    index, probs = arrays["index"], arrays["probs"]
    if (
        index.ndim != 1
        or probs.ndim != 2
        or probs.shape[0] != index.size
        or not np.issubdtype(index.dtype, np.integer)
        or not np.issubdtype(probs.dtype, np.floating)
        or (index.size and (index.min() < 0 or index.max() >= num_train))
        or np.unique(index).size != index.size
    ):
        raise ScoresError(
            f"{path}: expected unique int index [K] in 0..{num_train - 1} and probs [K, C], "
            f"got index {index.dtype} {index.shape} and probs {probs.shape}"
        )
    provenance = {}
    if "provenance" in arrays:
        provenance = parse_provenance(arrays["provenance"], str(path), ScoresError)
    if expect_identity is not None and provenance.get("identity") != expect_identity:
        raise ScoresError(
            f"{path}: from another checkpoint (identity {provenance.get('identity')}, "
            f"expected {expect_identity}); evaluate the run again"
        )
    index = index.astype(np.int64)
    if expect_index is not None and not np.array_equal(np.sort(index), expect_index):
        raise ScoresError(
            f"{path}: covers {index.size} examples, but its run's aux arrays hold out "
            f"{expect_index.size} others (or other ones): not this run's held-out examples"
        )
    return HeldoutProbs(index, probs, provenance)


def load_heldout_probs(run_dir: str | os.PathLike, num_train: int) -> tuple[np.ndarray, np.ndarray]:
    """(index, probs) of one run's `heldout_probs.npz` beside its aux arrays, checked.

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
    loaded = load_heldout_probs_file(path, num_train)
    return loaded.index, loaded.probs


def out_of_sample_probs(run_dirs: Sequence[str | os.PathLike], num_train: int) -> OutOfSampleProbs:
    """The mean held-out softmax over `run_dirs` (see the module docstring), streamed.

    Raises:
      ScoresError: some run lacks its file (named), files disagree on the classes, or no
        runs were given.
    """
    if not run_dirs:
        raise ScoresError("no runs to read held-out probabilities from")
    accumulator = HeldoutProbsAccumulator(num_train)
    for run_dir in run_dirs:
        index, probs = load_heldout_probs(run_dir, num_train)
        accumulator.add(index, probs, str(Path(run_dir) / HELDOUT_PROBS_FILE))
    return accumulator.result()


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
