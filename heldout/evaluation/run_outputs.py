"""`outputs.npz` of released checkpoints, written while `heldout evaluate` re-evaluates them.

Only a run whose re-evaluated predictions match its aux arrays N out of N gets a file, under
the user's outputs folder in the release's layout (never in the downloaded tree), with the
margins taken against the labels the run was trained on; a resume skips current files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heldout.errors import HeldoutError, OutputsError
from heldout.evaluation.options import EvalOptions
from heldout.release import label_corruption
from heldout.release import layout as release
from heldout.release.outputs import (
    load_outputs,
    outputs_from_logits,
    outputs_path,
    run_identity,
    save_outputs,
)


def run_outputs_path(run: release.Run, options: EvalOptions) -> Path:
    """Where `run`'s `outputs.npz` goes: `<outputs_dir>/<ratio>/<run_id>/outputs.npz`."""
    return outputs_path(run.path, run.experiment_dir, options.outputs_dir)


def outputs_current(run: release.Run, options: EvalOptions) -> bool:
    """Whether `run`'s outputs file exists, is readable and carries the run's identity (a
    resume skips it); any problem with it means it is written again."""
    path = run_outputs_path(run, options)
    if not path.is_file():
        return False
    try:
        identity = run_identity(run.path, run.subset_ratio, run.run_id)
        outputs = load_outputs(path, expect_identity=identity, aux=run.load_aux())
    except (HeldoutError, OSError):
        return False
    return ("logits" in options.outputs) == bool(outputs.logits)


def _index_order(results, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) of `split` in index order from its `EvalResult`."""
    result = results[split]
    logits = np.empty_like(result.logits)
    logits[result.index] = result.logits
    labels = np.empty_like(result.labels)
    labels[result.index] = result.labels
    return logits, labels


def _check_trained_labels(run: release.Run, train_labels: np.ndarray) -> str:
    """ "after_corruption" or "dataset"; refuses labels that disagree with the experiment's
    label-corruption record (the source served other labels than the run trained on)."""
    corruption = label_corruption.experiment_label_corruption(run.experiment_dir)
    if corruption is None:
        return "dataset"
    index = corruption.indices
    if index.size and (
        index.max() >= train_labels.size
        or not np.array_equal(train_labels[index], corruption.new_labels)
    ):
        meta = release.read_experiment_meta(Path(run.experiment_dir))
        record = Path(run.experiment_dir) / meta.extra.get(label_corruption.META_KEY, "")
        raise OutputsError(
            f"{record}: the labels the data source serves disagree with this label-corruption "
            f"record; no outputs written for {run.path}"
        )
    return "after_corruption"


def write_run_outputs(run: release.Run, check, options: EvalOptions) -> Path | None:
    """Writes `run`'s `outputs.npz` from a `RunCheck` made with `keep_logits`.

    Args:
      run: the run.
      check: its `heldout.evaluation.evaluate.RunCheck` (both splits, with logits).
      options: resolved options with `outputs` and `outputs_dir`.

    Returns:
      The written file; None when the predictions disagree with the aux arrays (no file).

    Raises:
      OutputsError: labels that disagree with the experiment's label-corruption record.
      UnsafeWriteError: the file cannot be written (a link, a full disk), naming it.
    """
    if not check.all_match:
        return None
    logits, labels = {}, {}
    for split in ("train", "test"):
        logits[split], labels[split] = _index_order(check.results, split)
    labels_source = _check_trained_labels(run, labels["train"])
    arrays = outputs_from_logits(logits, labels, check.aux, keep_logits="logits" in options.outputs)
    path = run_outputs_path(run, options)
    identity = run_identity(run.path, run.subset_ratio, run.run_id)
    save_outputs(
        path, arrays, identity, labels_source=labels_source, checkpoint=str(check.restore.path)
    )
    return path
