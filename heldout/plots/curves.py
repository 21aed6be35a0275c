"""Learning curves: per-epoch accuracies of a training call, collected and drawn.

The random-labels experiment of Zhang et al. (2017) is read from two curves side by side:
with true labels training and held-out accuracy rise together; with random labels the
training accuracy still climbs towards 100% while the held-out accuracy stays at chance.
`CurveRecorder` collects a call's `EpochLog` events (pass it as `on_event`, or call it
from another callback) and `learning_curve_figure` draws any number of such curves in one
axes: `Acc-tr` solid, `Acc-val` dashed, one colour per curve. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from heldout.plots.canvas import new_figure, save_figure
from heldout.training.events import EpochLog, Event


@dataclasses.dataclass(frozen=True)
class LearningCurve:
    """Per-epoch means over every model a training call trained (accuracies as fractions).

    `epochs` counts from 0 (the log lines' `000:`); `seconds` is the training wall time of
    each epoch summed over the groups of models.
    """

    label: str
    epochs: np.ndarray  # int [E]
    acc_train: np.ndarray  # float [E]
    acc_val: np.ndarray
    loss_train: np.ndarray
    loss_val: np.ndarray
    seconds: np.ndarray

    def as_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The curve as `<prefix>_<field>` arrays (for an `.npz` beside the figure)."""
        fields = ("epochs", "acc_train", "acc_val", "loss_train", "loss_val", "seconds")
        return {f"{prefix}_{name}": getattr(self, name) for name in fields}


class CurveRecorder:
    """Collects `EpochLog` events; `curve(label)` averages them per epoch over all models."""

    def __init__(self):
        self.logs: list[EpochLog] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, EpochLog):
            self.logs.append(event)

    def curve(self, label: str) -> LearningCurve:
        """The mean curve over every model logged so far (weighted by models per group).

        Raises:
          ValueError: nothing was logged (a bug of the caller: there was no training).
        """
        if not self.logs:
            raise ValueError("no epochs were logged: nothing was trained")
        epochs = sorted({log.epoch for log in self.logs})
        columns = {name: [] for name in ("acc_train", "acc_val", "loss", "val_loss")}
        seconds = []
        for epoch in epochs:
            logs = [log for log in self.logs if log.epoch == epoch]
            for name, values in columns.items():
                values.append(np.concatenate([getattr(log, name) for log in logs]).mean())
            seconds.append(sum(log.seconds for log in logs))
        return LearningCurve(
            label=label,
            epochs=np.asarray(epochs, dtype=np.int64) - 1,
            acc_train=np.asarray(columns["acc_train"], dtype=np.float64),
            acc_val=np.asarray(columns["acc_val"], dtype=np.float64),
            loss_train=np.asarray(columns["loss"], dtype=np.float64),
            loss_val=np.asarray(columns["val_loss"], dtype=np.float64),
            seconds=np.asarray(seconds, dtype=np.float64),
        )


def learning_curve_figure(
    curves: Sequence[LearningCurve], title: str | None = None, chance: float | None = None
) -> Figure:
    """One axes: accuracy (%) against epoch, `Acc-tr` solid and `Acc-val` dashed per curve.

    Args:
      curves: the curves to draw (e.g. true labels and random labels).
      title: the figure's title.
      chance: accuracy (fraction) of guessing, drawn as a dotted line (0.1 for 10 classes).

    Returns:
      The matplotlib `Figure` (not shown; save it with `save_learning_curves`).
    """
    figure = new_figure(6.4, 4.2, layout="constrained")
    axes = figure.add_subplot()
    colours = colormaps["tab10"].colors
    for k, curve in enumerate(curves):
        colour = colours[k % len(colours)]
        every = max(1, curve.epochs.size // 25)  # markers stay legible over hundreds of epochs
        axes.plot(
            curve.epochs, 100 * curve.acc_train, "-o", color=colour, markersize=3,
            markevery=every, label=f"{curve.label}: Acc-tr",
        )  # fmt: skip
        axes.plot(
            curve.epochs, 100 * curve.acc_val, "--s", color=colour, markersize=3,
            markevery=every, label=f"{curve.label}: Acc-val",
        )  # fmt: skip
    if chance is not None:
        axes.axhline(100 * chance, color="0.5", linestyle=":", linewidth=1, label="chance")
    axes.set_xlabel("epoch")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 101)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    if title:
        axes.set_title(title, fontsize="medium")
    return figure


def save_learning_curves(
    curves: Sequence[LearningCurve],
    path_stem: str | os.PathLike,
    formats: Sequence[str] = ("png", "pdf"),
    title: str | None = None,
    chance: float | None = None,
) -> list[Path]:
    """Draws the curves and writes `<path_stem>.<format>` for each format, atomically.

    Returns:
      The files written (through `heldout.plots.canvas.save_figure`: a temporary file
      renamed when complete, with the umask's mode).

    Raises:
      UsageError: an unknown format.
    """
    return save_figure(learning_curve_figure(curves, title, chance), path_stem, formats)
