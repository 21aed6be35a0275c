"""Writes a synthetic experiment's runs into the released layout, refusing a taken folder.

Shared by the two synthetic modes (`synthetic`, `known_probabilities`): `experiment.json`
first, then every run, and nothing at all when the folder already holds an experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from heldout.release import layout as release
from heldout.release.aux_arrays import AuxArrays


def write_experiment_folder(
    experiment_dir: Path,
    runs_per_ratio: dict[float, int],
    split_sizes: tuple[int, int],
    extra: dict,
    runs: Iterable[tuple[float, int, AuxArrays]],
    on_run_written: Callable[[release.Run], None] | None,
) -> release.Experiment:
    """`experiment.json`, then every run; nothing is written if the folder is taken."""
    _check_empty(experiment_dir, runs_per_ratio)
    release.write_experiment_meta(
        experiment_dir,
        release.ExperimentMeta(
            name=experiment_dir.name,
            num_train=split_sizes[0],
            num_test=split_sizes[1],
            extra=extra,
        ),
    )
    for subset_ratio, run_id, aux in runs:
        run = release.write_run(experiment_dir, subset_ratio, run_id, aux)
        if on_run_written is not None:
            on_run_written(run)
    return release.open_experiment(experiment_dir)


def _check_empty(experiment_dir: Path, runs_per_ratio: dict[float, int]) -> None:
    meta = experiment_dir / release.EXPERIMENT_META_FILE
    taken = [meta] if meta.exists() else []
    for subset_ratio, num_runs in runs_per_ratio.items():
        ratio_dir = experiment_dir / release.ratio_dir_name(subset_ratio)
        taken += [ratio_dir / str(i) for i in range(num_runs)]
    taken = [path for path in taken if path.exists()]
    if taken:
        more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
        raise FileExistsError(
            f"{experiment_dir}: already holds an experiment ({taken[0]}{more}); "
            "not replacing it: choose another folder"
        )
