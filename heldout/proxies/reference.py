"""The reference a proxy is measured against: a holdout C-score of the same examples.

Either a scores file of `compute_scores` (key `cscore`) or a published C-score file in
the experiment's order; its length and labels are checked against the training set. The
reference's split-half reliability, read from its experiment's runs, bounds how high a
proxy's rho can be.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from heldout._core.npz import load_npz
from heldout.errors import NpzFileError, PublishedFileError, ScoresFileError
from heldout.published.format import values_in_range

_SHOW = 5


@dataclasses.dataclass(frozen=True)
class ReferenceScores:
    """A reference C-score, as read (not yet checked against the training set).

    Attributes:
      path: the file.
      cscore: float64 [N] (NaN where the reference has none).
      labels: int64 [N] or None.
      kind: `scores` (compute_scores.py) or `published`.
      experiment: the experiment name a scores file records, else None.
    """

    path: str
    cscore: np.ndarray
    labels: np.ndarray | None
    kind: str
    experiment: str | None = None


def load_reference(path: str | os.PathLike) -> ReferenceScores:
    """Reads `--reference` (see the module docstring).

    Raises:
      ScoresFileError: unreadable, neither kind of file, or C-scores that are infinite or
        outside [0, 1] (the message names it).
    """
    source = os.fspath(path)
    if not source.endswith(".npy"):
        try:
            arrays = load_npz(source, error=ScoresFileError, what="a reference scores file")
        except NpzFileError as error:
            raise ScoresFileError(str(error)) from None
        if "cscore" in arrays:
            cscore = np.asarray(arrays["cscore"], dtype=np.float64)
            if cscore.ndim != 1:
                raise ScoresFileError(f"{source}: cscore must be a vector, got {cscore.shape}")
            try:  # a C-score is a probability; NaN marks an example never held out
                values_in_range(cscore, "cscore", source, 0.0, 1.0, allow_nan=True)
            except PublishedFileError as error:
                raise ScoresFileError(str(error)) from None
            experiment = str(arrays["experiment"]) if "experiment" in arrays else None
            return ReferenceScores(source, cscore, None, "scores", experiment)
    from heldout.published.cscores import load_cscores

    try:
        published = load_cscores(source)
    except PublishedFileError as error:
        raise ScoresFileError(
            f"{error} (a reference is a compute_scores file with `cscore`, or a "
            "published C-score file with `scores`)"
        ) from None
    return ReferenceScores(source, published.scores, published.labels, "published")


def _disagreement(path: str, ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    differ = np.flatnonzero(ours != theirs)
    if differ.size:
        shown = ", ".join(str(int(i)) for i in differ[:_SHOW])
        raise ScoresFileError(
            f"{path}: its labels disagree with {what} at {differ.size} of {ours.size} "
            f"positions (first: {shown}): another order, or other data; bring a published "
            "file into the experiment's order with tools/map_order.py"
        )


def check_reference(
    reference: ReferenceScores,
    num_train_full: int,
    num_train: int,
    clean_labels: np.ndarray,
    trained_labels: np.ndarray,
    reference_labels: np.ndarray | None = None,
) -> np.ndarray:
    """The reference's C-scores of the first `num_train` examples, checked.

    Args:
      reference: from `load_reference`.
      num_train_full: the dataset's training-set size.
      num_train: the examples the proxies cover (the first ones; `--num_train`).
      clean_labels: int [num_train], the dataset's labels (compared with a published file's).
      trained_labels: int [num_train], the labels the proxies' model trains on (compared
        with `reference_labels`, the reference experiment's trained-on labels).
      reference_labels: the reference experiment's trained-on labels [N], or None.

    Returns:
      float64 [num_train].

    Raises:
      ScoresFileError: another length, labels that disagree, or fewer than 2 defined
        (not NaN) C-scores among those used (the message names the file).
    """
    size = reference.cscore.size
    if size not in (num_train_full, num_train):
        raise ScoresFileError(
            f"{reference.path}: holds {size} C-scores, but the training set has "
            f"{num_train_full} examples"
            + (f" (the first {num_train} used)" if num_train != num_train_full else "")
            + ": a reference of another dataset or split"
        )
    if reference.labels is not None:
        _disagreement(
            reference.path, clean_labels, reference.labels[:num_train], "the dataset's labels"
        )
    if reference_labels is not None:
        if reference_labels.size != size:
            raise ScoresFileError(
                f"{reference.path}: {size} C-scores, but its experiment has "
                f"{reference_labels.size} training labels"
            )
        _disagreement(
            reference.path,
            trained_labels,
            reference_labels[:num_train],
            "the labels trained on here (other order, or other label corruption)",
        )
    scores = reference.cscore[:num_train]
    defined = int(np.count_nonzero(~np.isnan(scores)))
    if defined < 2:  # every rank correlation would be NaN, after the whole training
        raise ScoresFileError(
            f"{reference.path}: {defined} of the {scores.size} C-scores used are defined "
            "(the rest are NaN): a rank correlation needs at least 2"
        )
    return scores


@dataclasses.dataclass(frozen=True)
class ReferenceReliability:
    """Split-half reliability of the reference: mean rho over `repeats` random splits."""

    rho: float
    repeats: int
    runs_by_ratio: dict[float, int]

    @property
    def num_runs(self) -> int:
        return sum(self.runs_by_ratio.values())


def open_reference_experiment(reference: ReferenceScores, experiment_dir: str | os.PathLike):
    """The experiment behind a scores-file reference, checked to be the one it names.

    Raises:
      ScoresFileError: the folder holds another experiment than the file names.
    """
    from heldout.release import layout as release

    experiment = release.open_experiment(experiment_dir)
    if reference.experiment is not None and experiment.name != reference.experiment:
        raise ScoresFileError(
            f"{reference.path}: scores of experiment {reference.experiment!r}, but "
            f"{experiment_dir} holds {experiment.name!r}"
        )
    return experiment


def reference_labels(experiment) -> np.ndarray:
    """The labels the reference experiment's runs were trained on, in its order."""
    from heldout.datasets.relabeled import experiment_labels

    return np.asarray(experiment_labels(experiment))


def split_half_reliability(experiment, repeats: int = 5, seed: int = 0) -> ReferenceReliability:
    """rho between the integral C-scores of two random halves of every ratio's runs.

    Reads each run's aux arrays once (`heldout.release.reading.read_runs`).

    Raises:
      ScoresError: a ratio with fewer than 2 runs.
    """
    from heldout.errors import ScoresError
    from heldout.release.reading import read_runs
    from heldout.scores.request import known_split_sizes
    from heldout.scores.uncertainty.reliability import SplitHalfAccumulator

    ratios = experiment.subset_ratios
    runs_by_ratio = {ratio: [run.aux_path for run in experiment.runs_at(ratio)] for ratio in ratios}
    few = {ratio: len(keys) for ratio, keys in runs_by_ratio.items() if len(keys) < 2}
    if few or not ratios:
        raise ScoresError(
            f"{experiment.path}: split halves need at least 2 runs per ratio; ratios with "
            f"fewer: {few}"
        )
    halves = SplitHalfAccumulator(runs_by_ratio, repeats, None, seed)
    runs = [run for ratio in ratios for run in experiment.runs_at(ratio)]
    for run, aux in read_runs(runs, size_check=known_split_sizes(experiment)):
        halves.add(run.aux_path, aux)
    rho, _ = halves.measured("cscore")
    value = float(np.nanmean(rho)) if np.isfinite(rho).any() else math.nan
    return ReferenceReliability(
        value, repeats, {float(r): len(k) for r, k in runs_by_ratio.items()}
    )


def reference_identity(reference: ReferenceScores) -> dict:
    """What the output records about its reference: its file identity and kind."""
    from heldout._core.provenance import file_identity

    return {
        "file": file_identity(Path(reference.path)),
        "kind": reference.kind,
        "experiment": reference.experiment,
    }
