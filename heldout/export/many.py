"""Exporting many runs of an experiment (`export_experiment`), resumable, under one lock."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from heldout._core.locks import FileLock
from heldout._core.write_safety import ensure_dir
from heldout.errors import CheckpointError, ModelError, StaleResultError, UsageError
from heldout.export.exporter import Exporter, export_checkpoint
from heldout.export.format import TMP_PREFIX, ExportResult


@dataclasses.dataclass(frozen=True)
class ExperimentExport:
    """What `export_experiment` did: exported, kept (already exported), failed runs."""

    exported: tuple[ExportResult, ...]
    reused: tuple[ExportResult, ...]
    failed: tuple[tuple[str, str], ...]  # (run folder, error message)
    without_checkpoint: int  # selected runs that have no checkpoint (aux arrays only)


def export_experiment(
    experiment,
    output_dir: str | os.PathLike,
    subset_ratio: float | None = None,
    max_runs: int | None = None,
    formats: Iterable[str] = ("safetensors",),
    check: bool = True,
    arch: str | None = None,
    num_classes: int | None = None,
    on_result: Callable[[str, ExportResult | None, str | None], None] | None = None,
) -> ExperimentExport:
    """Exports every selected run to `<output_dir>/<subset_ratio>/<run_id>/`.

    Resumable: rerun the same call and runs already exported (same checkpoint files) are
    kept, the others done; each run folder appears complete or not at all. One model is
    built per call and restored run by run. A run that fails (e.g. a truncated checkpoint)
    is recorded and the others go on. An exclusive lock on `<output_dir>/.export.lock`
    keeps a second exporter out; under it, temporaries of an interrupted export are removed.

    Args:
      experiment: `heldout.release.layout.open_experiment(...)`.
      output_dir: the root of the per-run export folders (created if missing).
      subset_ratio: only runs of this ratio (default: all ratios).
      max_runs: at most this many runs per ratio (in run-id order).
      formats, check: see `Exporter`.
      arch, num_classes: default from the experiment (`heldout.models.arch_for_experiment`).
      on_result: called per run with (run folder, result or None, error message or None).

    Returns:
      The `ExperimentExport`: runs exported, kept (already exported), failed (with the
      message), and how many selected runs had no checkpoint.

    Raises:
      LockBusyError: another export into `output_dir` is running.
      UsageError: no run at `subset_ratio`, or max_runs < 1.
    """
    from heldout.models.naming import arch_for_experiment
    from heldout.release.layout import ratio_dir_name

    if max_runs is not None and max_runs < 1:
        raise UsageError(f"max_runs must be at least 1, got {max_runs}")
    ratios = experiment.subset_ratios
    if subset_ratio is not None:
        ratios = tuple(r for r in ratios if abs(r - subset_ratio) < 1e-9)
        if not ratios:
            raise UsageError(
                f"{experiment.path}: no runs at subset ratio {subset_ratio}; ratios present: "
                f"{list(experiment.subset_ratios)}"
            )
    arch, num_classes = arch_for_experiment(experiment.meta, arch, num_classes)
    output_dir = Path(output_dir).absolute()
    ensure_dir(output_dir)
    exported, reused, failed, without = [], [], [], 0
    with FileLock(output_dir / ".export.lock", f"exporting checkpoints into {output_dir}"):
        for stale in output_dir.glob(f"*/{TMP_PREFIX}*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        exporter = Exporter(arch, num_classes, formats, check)
        for ratio in ratios:
            runs = experiment.runs_at(ratio)[: max_runs or None]
            for run in runs:
                if not run.has_checkpoint:
                    without += 1
                    continue
                target = output_dir / ratio_dir_name(ratio) / str(run.run_id)
                try:
                    result = export_checkpoint(
                        exporter,
                        run.path,
                        target,
                        run=str(run.path.absolute()),
                        experiment=str(Path(experiment.path).absolute()),
                        subset_ratio=ratio,
                        run_id=run.run_id,
                    )
                except (CheckpointError, StaleResultError, ModelError, OSError) as error:
                    failed.append((str(run.path), str(error)))
                    if on_result is not None:
                        on_result(str(run.path), None, str(error))
                    continue
                (reused if result.reused else exported).append(result)
                if on_result is not None:
                    on_result(str(run.path), result, None)
    return ExperimentExport(tuple(exported), tuple(reused), tuple(failed), without)
