"""The one printer of training progress, shared by `heldout train` and `heldout default`.

`TrainingProgress` receives `heldout.training` events (pass it as `on_event`) and prints
the plan, one line per epoch of each group of models (in the format of the published
random-labels demo, docs/cli.md), the runs written, with a tqdm bar of model-epochs below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from heldout import training

if TYPE_CHECKING:
    from heldout.training.fanout import ClusterTrainingResult


def run_range(run_ids: Sequence[int]) -> str:
    """`runs 0-31`, `run 3` or `runs 1,4`: how a group of runs is named in a line."""
    run_ids = list(run_ids)
    if len(run_ids) > 1 and run_ids == list(range(run_ids[0], run_ids[-1] + 1)):
        return f"runs {run_ids[0]}-{run_ids[-1]}"
    return "run" + ("s " if len(run_ids) > 1 else " ") + ",".join(map(str, run_ids))


def epoch_line(event: training.EpochLog) -> str:
    """`000: Acc-tr:  58.49, Acc-val: 56.92, L-tr: 1.1574, L-val: 1.1857` for one epoch.

    The epoch is 0-based and zero-padded to 3 digits; accuracies in percent with 2
    decimals (Acc-tr 6 wide, so 100.00 keeps the columns); losses with 4 decimals. Means
    over the models of the group.
    """
    return (
        f"{event.epoch - 1:03d}: Acc-tr: {100 * event.acc_train.mean():6.2f}, "
        f"Acc-val: {100 * event.acc_val.mean():5.2f}, L-tr: {event.loss.mean():.4f}, "
        f"L-val: {event.val_loss.mean():.4f}"
    )


def group_line(event: training.EpochLog) -> str:
    """The heading of a group's epoch lines.

    E.g. `ratio 0.5 runs 0-31: 20 epochs (means of 32 models)`.
    """
    line = f"ratio {event.subset_ratio:g} {run_range(event.run_ids)}: {event.epochs} epochs"
    if len(event.run_ids) > 1:
        line += f" (means of {len(event.run_ids)} models)"
    return line


def plan_line(plan: training.TrainingPlan) -> str:
    """The default first line: what is there and what will be trained."""
    return (
        f"{plan.experiment_dir}: {len(plan.finished)} runs already written, "
        f"{len(plan.pending)} to train"
    )


def result_line(
    result: training.TrainingResult | ClusterTrainingResult, tasks: int | None = None
) -> str:
    """The closing line of `heldout train`: runs written, skipped, set aside and left.

    Args:
      result: what `train_experiment` or `train_on_cluster` returned.
      tasks: the cluster tasks the runs were trained in (None: trained here).

    Returns:
      The line; the cluster branch adds the failed runs after it.
    """
    wrote = f"wrote {len(result.written)} runs"
    if tasks is not None:
        wrote += f" in {tasks} tasks"
    line = f"{result.experiment_dir}: {wrote}, skipped {len(result.skipped)} already written"
    if result.set_aside:
        line += f", set aside {len(result.set_aside)} unfinished run folders"
    if result.busy:
        line += f"; {len(result.busy)} runs left to another process training them"
    return line


class TrainingProgress:
    """Prints training events; a context manager that closes its progress bar.

    Args:
      every_epoch: a line per epoch of each group (train_heldout); False: only each
        group's last epoch (run_default, where the summary matters).
      run_lines: a line per run written (its train, held-out and test accuracy).
      indent: put before every line (run_default nests them under its step).
      describe_plan: the first line for a `TrainingPlan`; None to print nothing.
    """

    def __init__(
        self,
        *,
        every_epoch: bool = True,
        run_lines: bool = True,
        indent: str = "",
        describe_plan: Callable[[training.TrainingPlan], str | None] = plan_line,
    ):
        self.every_epoch = every_epoch
        self.run_lines = run_lines
        self.indent = indent
        self.describe_plan = describe_plan
        self._bar = None
        self._epochs = 0
        self._group = None  # (ratio, run ids) whose heading was printed last

    def _print(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(self.indent + line)
        else:
            print(self.indent + line, flush=True)

    def __call__(self, event: training.Event) -> None:
        if isinstance(event, training.TrainingPlan):
            self._epochs = event.epochs
            line = self.describe_plan(event)
            if line:
                print(line, flush=True)
            if event.pending:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=len(event.pending) * event.epochs,
                    unit="model-epoch",
                    dynamic_ncols=True,
                )
        elif isinstance(event, training.EpochLog):
            if self._bar is not None:
                self._bar.update(len(event.run_ids))
            if self.every_epoch or event.epoch == event.epochs:
                group = (event.subset_ratio, tuple(event.run_ids))
                if group != self._group:
                    self._group = group
                    self._print(group_line(event))
                self._print(epoch_line(event))
        elif isinstance(event, training.RunWritten):
            if self.run_lines:
                self._print(
                    f"wrote {event.run.path}: train {event.train_accuracy:.4f}, held-out "
                    f"{event.heldout_accuracy:.4f}, test {event.test_accuracy:.4f}"
                )
        elif isinstance(event, training.RunSetAside):
            self._print(
                f"ratio {event.subset_ratio:g} run {event.run_id}: {event.path} is not a "
                f"finished run ({event.reason}); moved it to {event.moved_to} and training "
                "it again"
            )
        elif isinstance(event, training.RunsSkipped):
            if self._bar is not None:
                self._bar.total = max(0, self._bar.total - len(event.run_ids) * self._epochs)
                self._bar.refresh()
            self._print(
                f"ratio {event.subset_ratio:g} {run_range(event.run_ids)}: skipped, {event.reason}"
            )
        elif isinstance(event, training.TemporariesRemoved):
            self._print(
                f"removed {len(event.paths)} temporary folders or files left by interrupted "
                "training"
            )
        elif isinstance(event, training.OutputsPacked):
            self._print(event.describe())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
