"""Many runs' outputs of one subset ratio as dense arrays: the input of every datamodel metric.

`read_outputs` gives, for the runs of one ratio, which training examples each trained on and
its output (logit margin by default) on every test example, both in index order: from the
ratio's packed store (`heldout.release.outputs_pack`) where it is current for every run asked,
else from each run's file, checked against its run's identity and aux arrays.
"""

from __future__ import annotations

import os

import numpy as np

from heldout.errors import OutputsError
from heldout.release import layout as release
from heldout.release.outputs_checked import checked_run_outputs, runs_of
from heldout.release.outputs_pack import read_packed

OUTPUT_KINDS = ("logit_margin", "hinge_margin")


def read_outputs(
    experiment: release.Experiment | str | os.PathLike,
    subset_ratio: float,
    outputs_dir: str | os.PathLike | None = None,
    kind: str = "logit_margin",
    split: str = "test",
    run_ids: list[int] | None = None,
    skip_missing: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs of one ratio: their ids, training masks and outputs, all in index order.

    Args:
      experiment: an opened experiment or its folder.
      subset_ratio: the ratio whose runs are read.
      outputs_dir: where `heldout evaluate --outputs` wrote them (the release's layout);
        None: `outputs.npz` beside each run's aux arrays (experiments we train).
      kind: "logit_margin" (φ = z_y − logsumexp_{k≠y} z_k) or "hinge_margin".
      split: "test" (the test split) or "train" (the full training split).
      run_ids: only these runs (in this order); None: every run of the ratio, by id.
      skip_missing: leave out runs without an outputs file instead of refusing.

    Returns:
      (run_ids int64 [R], masks bool [R, n_train] (True: the run trained on the example),
      outputs float32 [R, n_split]).

    Raises:
      OutputsError: a missing file (unless `skip_missing`), one from another checkpoint, one
        disagreeing with its run's aux arrays, or no outputs at all; names the file.
      InconsistentRunError: runs whose split sizes differ.
      ReleaseLayoutError: no run at `subset_ratio`, or an unknown run id.
      ValueError: an unknown `kind` or `split`.
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"kind must be one of {list(OUTPUT_KINDS)}, got {kind!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    experiment, runs = runs_of(experiment, subset_ratio, run_ids)
    packed = read_packed(experiment, runs, outputs_dir, kind, split)
    if packed is not None:
        return packed
    ids, masks, values = [], [], []
    for run, aux, outputs in checked_run_outputs(experiment, runs, outputs_dir, skip_missing):
        ids.append(run.run_id)
        masks.append(aux.train_mask())
        values.append(outputs.in_index_order(split, kind))
    if not ids:
        where = outputs_dir if outputs_dir is not None else experiment.path
        raise OutputsError(f"{where}: no outputs for any run at subset ratio {subset_ratio}")
    return np.asarray(ids, dtype=np.int64), np.stack(masks), np.stack(values)
