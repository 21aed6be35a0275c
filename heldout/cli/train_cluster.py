"""`heldout train --scheduler=local|ADDRESS`: the fan-out branch of the command.

Prints the dashboard address, a tqdm bar over runs (tasks report when a whole group is
written, so the bar moves by groups), a line per run written or failed, and the summary.
Exit status 1 when some runs failed (each named by path; re-running retries them).
"""

from __future__ import annotations

import sys

from heldout.cli import app
from heldout.cli.options import ClusterOptions
from heldout.cli.progress import plan_line, result_line
from heldout.training import events
from heldout.training import fanout as training_cluster
from heldout.training.config import TrainingConfig

_SHOW_TRACEBACKS = 1  # of failures that are bugs; the rest are named by path only


class ClusterProgress:
    """Prints cluster training events, with a bar over the pending runs; a context manager."""

    def __init__(self):
        self._bar = None
        self._tracebacks = 0

    def _print(self, line: str, stream=None) -> None:
        if self._bar is not None:
            self._bar.write(line, file=stream)
        else:
            print(line, file=stream, flush=True)

    def __call__(self, event) -> None:
        if isinstance(event, events.TrainingPlan):
            print(plan_line(event), flush=True)
            if event.pending:
                from tqdm import tqdm

                self._bar = tqdm(total=len(event.pending), unit="run", dynamic_ncols=True)
        elif isinstance(event, training_cluster.ClusterStarted):
            where = event.dashboard_link or "none served (pip install bokeh for one)"
            gpu = ", one GPU per task" if event.resources else ""
            self._print(
                f"Dask scheduler {event.scheduler_address}: {event.workers} workers, "
                f"{event.tasks} tasks{gpu}; dashboard: {where}"
            )
        elif isinstance(event, events.RunWritten):
            self._advance()
            self._print(
                f"wrote {event.run.path}: train {event.train_accuracy:.4f}, held-out "
                f"{event.heldout_accuracy:.4f}, test {event.test_accuracy:.4f}"
            )
        elif isinstance(event, training_cluster.RunFailed):
            self._advance()
            run = event.run
            self._print(f"failed: {run.path}: {run.error}", sys.stderr)
            if run.traceback and self._tracebacks < _SHOW_TRACEBACKS:
                self._tracebacks += 1
                self._print(run.traceback, sys.stderr)
        elif isinstance(event, events.RunsSkipped):
            self._advance(len(event.run_ids))
            self._print(f"ratio {event.subset_ratio:g} runs {event.run_ids}: {event.reason}")
        elif isinstance(event, events.RunSetAside):
            self._print(f"{event.path}: not a finished run ({event.reason}); moved aside")
        elif isinstance(event, events.TemporariesRemoved):
            self._print(f"removed {len(event.paths)} temporaries left by interrupted training")
        elif isinstance(event, events.OutputsPacked):
            self._print(event.describe())

    def _advance(self, count: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def __enter__(self) -> ClusterProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def train(
    config: TrainingConfig,
    output_dir: str,
    options: ClusterOptions,
    gpu: str,
    pack_outputs: bool = True,
) -> int:
    """Trains on the cluster the options name; prints the outcome; the exit status."""
    with ClusterProgress() as progress:
        result = training_cluster.train_on_cluster(
            config,
            output_dir,
            scheduler=options.scheduler,
            n_workers=options.local_workers,
            on_event=progress,
            gpu=gpu,
            pack_outputs=pack_outputs,
        )
    line = result_line(result, tasks=result.tasks)
    if result.failed:
        line += f"; {len(result.failed)} runs FAILED (named above; re-run to retry them)"
    print(line)
    return app.EXIT_FAILED if result.failed else app.EXIT_OK
