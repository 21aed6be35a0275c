"""`outputs.npz` and `heldout_probs.npz` of released checkpoints, written while `heldout
evaluate` re-evaluates them. Only a run whose predictions match its aux arrays N out of N gets
files, under the user's outputs folder in the release's layout (never in the downloaded tree),
margins taken against the labels the run trained on; a resume skips current files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heldout.errors import HeldoutError, OutputsError
from heldout.evaluation.options import MARGIN_KINDS, EvalOptions
from heldout.release import label_corruption
from heldout.release import layout as release
from heldout.release.outputs import (
    load_outputs,
    outputs_from_logits,
    outputs_path,
    run_identity,
    save_outputs,
)
from heldout.scores.soft_cscore import (
    heldout_probs_path,
    load_heldout_probs_file,
    softmax_float16,
    write_heldout_probs,
)


def run_outputs_path(run: release.Run, options: EvalOptions) -> Path:
    """Where `run`'s `outputs.npz` goes: `<outputs_dir>/<ratio>/<run_id>/outputs.npz`."""
    return outputs_path(run.path, run.experiment_dir, options.outputs_dir)


def run_heldout_probs_path(run: release.Run, options: EvalOptions) -> Path:
    """Where `run`'s `heldout_probs.npz` goes: beside its `outputs.npz` in the outputs folder."""
    return heldout_probs_path(run.path, run.experiment_dir, options.outputs_dir)


def outputs_current(run: release.Run, options: EvalOptions) -> bool:
    """Whether `run`'s asked-for files exist, are readable and carry the run's identity (a
    resume skips them); any problem with one means they are written again."""
    try:
        identity = run_identity(run.path, run.subset_ratio, run.run_id)
        aux = run.load_aux()
        if set(options.outputs) & set(MARGIN_KINDS):
            path = run_outputs_path(run, options)
            if not path.is_file():
                return False
            outputs = load_outputs(path, expect_identity=identity, aux=aux)
            if ("logits" in options.outputs) != bool(outputs.logits):
                return False
        if "heldout_probs" in options.outputs:
            path = run_heldout_probs_path(run, options)
            if not path.is_file():
                return False
            heldout = np.flatnonzero(~aux.train_mask())
            load_heldout_probs_file(path, aux.num_train, identity, expect_index=heldout)
    except (HeldoutError, OSError):
        return False
    return True


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
    """Writes `run`'s `outputs.npz` and/or `heldout_probs.npz` from a `RunCheck` made with
    `keep_logits`, as `options.outputs` asks.

    `heldout_probs.npz` holds the float16 softmax of the train-split logits on the examples
    the run held out (ascending), in the format training writes (`record_heldout_probs`),
    with the checkpoint identity in its provenance.

    Args:
      run: the run.
      check: its `heldout.evaluation.evaluate.RunCheck` (with logits; both splits for
        margins, the train split for heldout_probs).
      options: resolved options with `outputs` and `outputs_dir`.

    Returns:
      The folder of the written files; None when the predictions disagree with the aux
      arrays (no file).

    Raises:
      OutputsError: labels that disagree with the experiment's label-corruption record.
      UnsafeWriteError: the file cannot be written (a link, a full disk), naming it.
    """
    if not check.all_match:
        return None
    logits, labels = {}, {}
    for split in check.results:
        logits[split], labels[split] = _index_order(check.results, split)
    labels_source = _check_trained_labels(run, labels["train"])
    identity = run_identity(run.path, run.subset_ratio, run.run_id)
    path = run_outputs_path(run, options)
    if "heldout_probs" in options.outputs:
        heldout = np.flatnonzero(~check.aux.train_mask())
        probs = softmax_float16(logits["train"][heldout])
        write_heldout_probs(
            path.parent,
            heldout,
            probs,
            identity=identity,
            checkpoint=str(check.restore.path),
            source="heldout evaluate",
        )
    if set(options.outputs) & set(MARGIN_KINDS):
        keep_logits = "logits" in options.outputs
        arrays = outputs_from_logits(logits, labels, check.aux, keep_logits=keep_logits)
        save_outputs(
            path, arrays, identity, labels_source=labels_source, checkpoint=str(check.restore.path)
        )
    return path.parent
