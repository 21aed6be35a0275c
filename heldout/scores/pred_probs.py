"""Out-of-sample predicted probabilities for cleanlab, from an experiment's own runs.

Every training example's mean held-out softmax over the runs that held it out, streamed run
by run from their `heldout_probs.npz` (beside the runs, or in the outputs folder of `heldout
evaluate --outputs=heldout_probs`), written as plain `.npy` files with the labels the runs
trained on and the count behind each row. No TensorFlow: the caller reads the labels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from heldout._core.atomic import atomic_open, make_temp_dir, replace_dir, write_json_atomic
from heldout._core.provenance import provenance_for
from heldout._core.write_safety import check_replaceable_dir
from heldout.errors import InconsistentRunError, LabelCorruptionError, ScoresError
from heldout.release import label_corruption
from heldout.release import layout as release
from heldout.release.outputs import run_identity
from heldout.scores.soft_cscore import (
    HELDOUT_PROBS_FILE,
    HeldoutProbsAccumulator,
    OutOfSampleProbs,
    heldout_probs_path,
    load_heldout_probs_file,
)

PRED_PROBS_FILE = "pred_probs.npy"  # float32 [N, C]; NaN rows where never held out
LABELS_FILE = "labels.npy"  # int64 [N]: the labels the runs trained on
COUNTS_FILE = "counts.npy"  # int64 [N]: the runs behind each row
SIDECAR_FILE = "pred_probs.json"  # identity and provenance, written last
ARRAY_FILES = (PRED_PROBS_FILE, LABELS_FILE, COUNTS_FILE)
EXPORT_FILES = frozenset((*ARRAY_FILES, SIDECAR_FILE))
FORMAT = "heldout pred_probs"


@dataclasses.dataclass(frozen=True)
class PredProbs:
    """An export: `pred_probs` float32 [N, C] (rows sum to 1; NaN where `counts` is 0),
    `labels` int64 [N] and `counts` int64 [N], in the dataset's order, and the sidecar."""

    pred_probs: np.ndarray
    labels: np.ndarray
    counts: np.ndarray
    provenance: dict

    @property
    def held_out(self) -> np.ndarray:
        """bool [N]: rows with at least one run behind them (finite; what cleanlab takes)."""
        return self.counts > 0


def select_runs(experiment: release.Experiment, subset_ratio: float | None = None) -> list:
    """The runs whose held-out probabilities are averaged.

    Args:
      experiment: the opened experiment.
      subset_ratio: only this ratio's runs; None: every run, all ratios (as the soft
        C-score).

    Returns:
      The runs, by (ratio, run id).

    Raises:
      ScoresError: no run (at that ratio).
    """
    runs = list(experiment.runs) if subset_ratio is None else experiment.runs_at(subset_ratio)
    if not runs:
        where = "" if subset_ratio is None else f" at subset ratio {subset_ratio}"
        raise ScoresError(
            f"{experiment.path}: no runs{where} (ratios present: {list(experiment.subset_ratios)})"
        )
    return runs


def accumulate_heldout_probs(
    experiment: release.Experiment,
    runs: Sequence,
    outputs_dir: str | os.PathLike | None = None,
    progress: Callable[[object], None] | None = None,
) -> OutOfSampleProbs:
    """The mean held-out softmax over `runs`, read one run at a time.

    Each file must cover exactly the examples its run's aux arrays hold out; a file in
    `outputs_dir` (and any file whose provenance records one) must carry its run's
    checkpoint identity.

    Args:
      experiment: the opened experiment.
      runs: its runs to average (`select_runs`).
      outputs_dir: where `heldout evaluate --outputs=heldout_probs` wrote the files; None:
        beside each run (experiments trained with `--record_heldout_probs`).
      progress: called with each run once it is read.

    Returns:
      float64 means [N, C] (NaN rows where no run held the example out) and the counts.

    Raises:
      ScoresError: a missing, malformed, foreign or mismatching file (named).
      InconsistentRunError: runs whose training split sizes differ.
    """
    accumulator, first = None, None
    for run in runs:
        path = heldout_probs_path(run.path, experiment.path, outputs_dir)
        if not path.is_file():
            raise ScoresError(
                f"{path}: no {HELDOUT_PROBS_FILE} for run {run.run_id} at ratio "
                f"{run.subset_ratio:g} (write them with `heldout evaluate "
                "--outputs=heldout_probs --outputs_dir=...`, or train with --record_heldout_probs)"
            )
        aux = run.load_aux()
        if first is None:
            first = (aux.num_train, run.aux_path)
            accumulator = HeldoutProbsAccumulator(aux.num_train)
        elif aux.num_train != first[0]:
            raise InconsistentRunError(
                f"{run.aux_path}: {aux.num_train} training examples, but {first[1]} has {first[0]}"
            )
        heldout = np.flatnonzero(~aux.train_mask())
        identity = run_identity(run.path, run.subset_ratio, run.run_id)
        loaded = load_heldout_probs_file(
            path,
            aux.num_train,
            expect_identity=identity if outputs_dir is not None else None,
            expect_index=heldout,
        )
        recorded = loaded.provenance.get("identity")
        if recorded is not None and recorded != identity:
            raise ScoresError(
                f"{path}: from another checkpoint (identity {recorded}, expected {identity})"
            )
        accumulator.add(loaded.index, loaded.probs, str(path))
        if progress is not None:
            progress(run)
    if accumulator is None:
        raise ScoresError(f"{experiment.path}: no runs to read held-out probabilities from")
    return accumulator.result()


def label_corruption_file(experiment: release.Experiment) -> Path | None:
    """The experiment's label-corruption record, or None when it trained on clean labels."""
    name = experiment.meta.extra.get(label_corruption.META_KEY)
    return Path(experiment.path) / name if name else None


def trained_labels(
    experiment: release.Experiment, dataset_labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, str]:
    """The labels the runs trained on: the dataset's clean training labels with the
    experiment's label-corruption record applied where it has one, checked against it.

    Args:
      experiment: the opened experiment.
      dataset_labels: the dataset's clean training labels, int [N] in index order.
      num_classes: C of the probabilities; every label must lie in [0, C).

    Returns:
      (labels int64 [N], "after_corruption" or "dataset").

    Raises:
      LabelCorruptionError: the record does not fit these labels (its original labels
        differ from the dataset's, or it names examples past its end); names the record.
      ScoresError: labels out of [0, C).
    """
    labels = np.asarray(dataset_labels, np.int64)
    labels_source = "dataset"
    record = label_corruption_file(experiment)
    if record is not None:
        try:
            labels = label_corruption.load_label_corruption(record).apply(labels)
        except LabelCorruptionError as error:
            message = str(error)
            if not message.startswith(str(record)):
                message = f"{record}: {message}"
            raise LabelCorruptionError(f"{message}; nothing written") from None
        labels_source = "after_corruption"
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ScoresError(
            f"{experiment.path}: labels {int(labels.min())}..{int(labels.max())} do not fit "
            f"the {num_classes} classes of the held-out probabilities"
        )
    return labels, labels_source


def require_held_out(probs: OutOfSampleProbs, min_count: int, where: str) -> None:
    """Refuses probabilities with an example held out by fewer than `min_count` runs.

    Raises:
      ScoresError: naming `where` (the folder read), how many examples and the first.
    """
    short = np.flatnonzero(probs.count < min_count)
    if min_count > 0 and short.size:
        raise ScoresError(
            f"{where}: {short.size} training examples are held out by fewer than {min_count} "
            f"runs (the first: example {int(short[0])}, {int(probs.count[short[0]])} runs); "
            "nothing written (more runs, or a smaller --min_count)"
        )


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def export_pred_probs(
    probs: OutOfSampleProbs, labels: np.ndarray, labels_source: str, **provenance
) -> PredProbs:
    """The export of `probs` and `labels` (see `PredProbs`), with its sidecar record.

    Args:
      probs: from `accumulate_heldout_probs`.
      labels: the checked labels (`check_trained_labels`).
      labels_source: "dataset" or "after_corruption".
      provenance: what the export is a result of (experiment, runs, outputs folder).

    Returns:
      The arrays and their sidecar (array checksums, never-held-out count, provenance).

    Raises:
      ScoresError: `labels` of another length than the probabilities.
    """
    labels = np.asarray(labels, np.int64)
    if labels.shape != (probs.count.size,):
        raise ScoresError(f"{labels.size} labels for {probs.count.size} examples' probabilities")
    pred_probs = probs.pred_probs()
    counts = probs.count.astype(np.int64)
    sidecar = provenance_for(
        format=FORMAT,
        num_train=int(counts.size),
        num_classes=int(pred_probs.shape[1]),
        num_runs=int(probs.num_runs),
        never_held_out=int((counts == 0).sum()),
        never_held_out_rows="NaN in pred_probs.npy, 0 in counts.npy; keep counts > 0",
        labels_source=labels_source,
        files={
            PRED_PROBS_FILE: {"dtype": "float32", "sha256": _sha256(pred_probs)},
            LABELS_FILE: {"dtype": "int64", "sha256": _sha256(labels)},
            COUNTS_FILE: {"dtype": "int64", "sha256": _sha256(counts)},
        },
        **provenance,
    )
    return PredProbs(pred_probs, labels, counts, sidecar)


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """Refuses, before any work, an output folder this export may not fill: it may be
    missing, empty, or hold only an earlier export's files (then replaced).

    Raises:
      UnsafeWriteError: it is a symbolic link.
      StaleResultError: it is a file, or holds anything else (named).
    """
    check_replaceable_dir(output_dir, EXPORT_FILES, "pred_probs export")


def save_pred_probs(output_dir: str | os.PathLike, export: PredProbs) -> list[Path]:
    """Writes the three `.npy` files and the sidecar (last) into a temporary folder beside
    `output_dir`, then renames it into place (an earlier export there is replaced): a
    reader sees the whole old export or the whole new one, never a mix.

    Returns:
      The written files.

    Raises:
      StaleResultError, UnsafeWriteError: `output_dir` is not one to fill
        (`check_output_dir`), or a write failed (a full disk), naming the file.
    """
    output_dir = Path(output_dir).absolute()
    check_output_dir(output_dir)
    tmp = make_temp_dir(output_dir.parent, f".{output_dir.name}-")
    try:
        for name, array in (
            (PRED_PROBS_FILE, export.pred_probs),
            (LABELS_FILE, export.labels),
            (COUNTS_FILE, export.counts),
        ):
            with atomic_open(tmp / name, "wb") as f:
                np.save(f, array, allow_pickle=False)
        write_json_atomic(tmp / SIDECAR_FILE, export.provenance)
        replace_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [output_dir / name for name in (*ARRAY_FILES, SIDECAR_FILE)]


def load_pred_probs(output_dir: str | os.PathLike) -> PredProbs:
    """Reads an export back (plain `np.load`, no pickles) and checks it against its sidecar.

    Args:
      output_dir: the folder `save_pred_probs` wrote.

    Returns:
      The arrays and the sidecar.

    Raises:
      ScoresError: a missing file, or arrays that disagree with the sidecar (named).
    """
    folder = Path(output_dir)
    sidecar_path = folder / SIDECAR_FILE
    try:
        sidecar = json.loads(sidecar_path.read_text())
        arrays = {name: np.load(folder / name, allow_pickle=False) for name in ARRAY_FILES}
    except (OSError, ValueError) as error:
        raise ScoresError(f"{folder}: not a readable pred_probs export ({error})") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
        raise ScoresError(f"{sidecar_path}: not a {FORMAT} sidecar")
    for name, array in arrays.items():
        if sidecar.get("files", {}).get(name, {}).get("sha256") != _sha256(array):
            raise ScoresError(f"{folder / name}: differs from what {sidecar_path} records")
    return PredProbs(arrays[PRED_PROBS_FILE], arrays[LABELS_FILE], arrays[COUNTS_FILE], sidecar)
