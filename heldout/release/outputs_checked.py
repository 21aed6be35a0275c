"""The runs of one ratio and their per-run outputs, each file checked as it is read.

Shared by `outputs_reading` (dense arrays for an analysis) and `outputs_pack` (the packed
store): every per-run `outputs.npz` is checked against its run's identity and aux arrays,
and all runs must have one split size.
"""

from __future__ import annotations

import os

from heldout.errors import InconsistentRunError, OutputsError, ReleaseLayoutError
from heldout.release import layout as release
from heldout.release.aux_arrays import AuxArrays
from heldout.release.outputs import RunOutputs, load_outputs, outputs_path, run_identity


def runs_of(
    experiment: release.Experiment | str | os.PathLike,
    subset_ratio: float,
    run_ids: list[int] | None = None,
) -> tuple[release.Experiment, list[release.Run]]:
    """The opened experiment and its runs at `subset_ratio` (only `run_ids`, in that order).

    Raises:
      ReleaseLayoutError: no run at `subset_ratio`, or an unknown run id.
    """
    if not isinstance(experiment, release.Experiment):
        experiment = release.open_experiment(experiment)
    runs = list(experiment.runs_at(subset_ratio))
    if run_ids is not None:
        runs = [experiment.run(subset_ratio, int(run_id)) for run_id in run_ids]
    if not runs:
        raise ReleaseLayoutError(
            f"{experiment.path}: no run at subset ratio {subset_ratio} "
            f"(ratios present: {list(experiment.subset_ratios)})"
        )
    return experiment, runs


def checked_run_outputs(
    experiment: release.Experiment, runs: list[release.Run], outputs_dir=None, skip_missing=False
):
    """Yields (run, aux, outputs) of each run with an outputs file, each checked against the
    run's identity and aux arrays and all of one split size.

    Raises:
      OutputsError: a missing file (unless `skip_missing`), one from another checkpoint, or
        one disagreeing with its run's aux arrays; names the file.
      InconsistentRunError: runs whose split sizes differ.
    """
    first = None
    for run in runs:
        path = outputs_path(run.path, experiment.path, outputs_dir)
        if not path.exists() and not path.is_symlink():
            if skip_missing:
                continue
            raise OutputsError(
                f"{path}: no outputs for run {run.run_id} (write them with `heldout evaluate "
                "--outputs=margins`, or pass skip_missing)"
            )
        aux: AuxArrays = run.load_aux()
        identity = run_identity(run.path, run.subset_ratio, run.run_id)
        outputs: RunOutputs = load_outputs(path, expect_identity=identity, aux=aux)
        sizes = (aux.num_train, aux.num_test)
        if first is None:
            first = (sizes, run.aux_path)
        elif sizes != first[0]:
            raise InconsistentRunError(
                f"{run.aux_path}: {sizes[0]} train and {sizes[1]} test examples, but "
                f"{first[1]} has {first[0][0]} and {first[0][1]}"
            )
        yield run, aux, outputs
