"""What `train_experiment` reports while it works, and what it returns.

The library never prints: it sends these records to the caller's `on_event` callback
(the command lines print them with `heldout.cli.progress`). Runs are named by
`(subset_ratio, run_id)` pairs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from heldout.release import layout as release
from heldout.release.outputs_pack import PackUpdate

RunKey = tuple[float, int]  # (subset_ratio, run_id)


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """Sent first: what will be trained and what is already there."""

    experiment_dir: Path
    pending: tuple[RunKey, ...]  # to train (includes the `invalid` ones)
    finished: tuple[RunKey, ...]  # already written and valid: skipped
    epochs: int
    invalid: tuple[RunKey, ...] = ()  # folders that look finished but are not: retrained


@dataclasses.dataclass(frozen=True)
class TemporariesRemoved:
    """Sent when leftovers of interrupted calls were removed (only when no one else trains)."""

    paths: tuple[Path, ...]


@dataclasses.dataclass(frozen=True)
class RunSetAside:
    """Sent when a run folder that is not a finished run was renamed aside (never deleted).

    The run is trained again; `moved_to` is a hidden name in the same ratio folder that
    the release reader ignores, kept for the user to inspect or delete.
    """

    subset_ratio: float
    run_id: int
    path: Path  # where the folder was
    moved_to: Path
    reason: str


@dataclasses.dataclass(frozen=True)
class RunDiverged:
    """Sent when a run's loss or weights stopped being finite: not written, not finished.

    Its model is kept in `kept_in` (a hidden folder of the ratio folder, ignored by the
    release reader) for inspection; the run stays pending (a lower learning rate helps).
    """

    subset_ratio: float
    run_id: int
    path: Path  # where the run would have been written
    kept_in: Path
    reason: str  # e.g. "loss became nan at epoch 3"

    def describe(self) -> str:
        """One line: the run, what went wrong, where its model is."""
        return (
            f"run {self.subset_ratio:g}/{self.run_id}: {self.reason}; not written as a "
            f"finished run, its model set aside in {self.kept_in}"
        )


@dataclasses.dataclass(frozen=True)
class RunsSkipped:
    """Sent when pending runs are left to another process that trains (or trained) them."""

    subset_ratio: float
    run_ids: tuple[int, ...]
    reason: str


@dataclasses.dataclass(frozen=True)
class EpochLog:
    """Sent after each epoch of a group of models trained together (arrays per model).

    The training figures are running ones, accumulated over the epoch's batches while the
    weights change (what the published training loops print, and free); the exact final
    training accuracy of each run is in `RunWritten.train_accuracy`. Labels are the ones
    trained on (corrupted where the experiment says so); test labels are never corrupted.
    """

    subset_ratio: float
    run_ids: tuple[int, ...]
    epoch: int  # 1-based (the log line prints it 0-based: `000:` is the first epoch)
    epochs: int
    loss: np.ndarray  # mean cross-entropy on the epoch's training batches ("L-tr")
    acc_train: np.ndarray  # accuracy on the epoch's training batches ("Acc-tr")
    acc_val: np.ndarray  # accuracy on the first val_examples test examples ("Acc-val")
    val_loss: np.ndarray  # mean cross-entropy on those test examples ("L-val")
    seconds: float  # wall time of the epoch's training steps


@dataclasses.dataclass(frozen=True)
class TrainingPass:
    """What the epoch's own training steps computed on each example, by example index.

    `logits` float32 [M, N, C]: the forward pass of the step that trained model m on
    example n (training mode, before that step's update; augmented images where the
    recipe augments); NaN where `seen` [M, N] is False (not in the model's subset). An
    example repeated to fill the last batch counts once, at its first step.
    """

    logits: np.ndarray
    seen: np.ndarray


@dataclasses.dataclass(frozen=True)
class EpochEnd:
    """Sent after each epoch's `EpochLog`, with access to the models as they are then.

    `predict_train(with_features)` evaluates every model of the group in inference mode on
    every training example, in index order: (logits float32 [M, N, C], penultimate-layer
    features float32 [M, N, H], or None unless `with_features`; MLPs only). It is the
    per-epoch statistics hook (`heldout.proxies.recording`): it costs nothing unless a
    callback calls it, and is valid only during the callback (the weights move on after).
    `snapshot()` copies the weights now and returns a `predict_train` of that copy, valid
    whenever and from any thread (to overlap the pass with the next epoch); None where the
    trainer has none. `training_pass`: the epoch's training-pass logits, when the trainer
    was asked to record them (`Trainer(record_training_passes=True)`), else None.
    """

    subset_ratio: float
    run_ids: tuple[int, ...]
    epoch: int  # 1-based
    epochs: int
    predict_train: Callable[[bool], tuple[np.ndarray, np.ndarray | None]]
    training_pass: TrainingPass | None = None
    snapshot: Callable[[], Callable[[bool], tuple[np.ndarray, np.ndarray | None]]] | None = None


@dataclasses.dataclass(frozen=True)
class RunWritten:
    """Sent when a run folder has been written."""

    run: release.Run
    train_accuracy: float  # on its own training subset (w.r.t. the trained-on labels)
    heldout_accuracy: float  # on the training examples it did not see
    test_accuracy: float


@dataclasses.dataclass(frozen=True)
class OutputsPacked:
    """Sent at the end of a call for each ratio: its outputs pack, kept, written, or not
    (`heldout.release.outputs_pack.update_pack`); `error`: why it could not be written."""

    subset_ratio: float
    update: PackUpdate | None
    error: str = ""

    def describe(self) -> str:
        """One line: what was packed, over how many runs (or why nothing was)."""
        if self.update is not None:
            return self.update.describe()
        return f"outputs pack of ratio {self.subset_ratio:g}: not written: {self.error}"


Event = (
    TrainingPlan
    | TemporariesRemoved
    | RunSetAside
    | RunDiverged
    | RunsSkipped
    | EpochLog
    | EpochEnd
    | RunWritten
    | OutputsPacked
)


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    """What one `train_experiment` call did.

    `busy` runs were pending but claimed by another process training into the same
    folder: they are not finished when this call returns (that process finishes them).
    `diverged` runs are not finished either: their loss or weights became non-finite.
    """

    experiment_dir: Path
    written: tuple[release.Run, ...]
    skipped: tuple[RunKey, ...]  # finished before this call (or by another process meanwhile)
    set_aside: tuple[RunSetAside, ...] = ()
    busy: tuple[RunKey, ...] = ()
    diverged: tuple[RunDiverged, ...] = ()  # not written: loss or weights not finite
