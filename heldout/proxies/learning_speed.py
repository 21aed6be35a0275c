"""Learning-speed proxies from a per-epoch table of one model's results on its training set.

Definitions (Jiang, Zhang, Talwar, Mozer, Section 4), for a model trained on the full
training set and evaluated at the end of every epoch, in inference mode, on every
training example; E epochs:
- `cbtl` (cumulative binary training loss, learning speed): number of epochs in which
  the example is classified correctly (integer in 0..E). High = learned early = regular.
- `cumulative_loss`: sum over epochs of the example's cross-entropy loss.
- `forgetting_events`: correct -> incorrect transitions between consecutive epochs.
- `first_learned_epoch`: first epoch (1-based) after which the example stays correct
  until the last epoch; E + 1 if it is wrong at the last epoch.
"""

from __future__ import annotations

import numpy as np

from heldout.errors import UsageError

LEARNING_SPEED_KEYS = ("cbtl", "cumulative_loss", "forgetting_events", "first_learned_epoch")


def _check_table(correct: np.ndarray, loss: np.ndarray | None) -> np.ndarray:
    correct = np.asarray(correct)
    if correct.ndim != 2 or correct.shape[0] < 1:
        raise UsageError(f"the correctness table must be [epochs, N], got shape {correct.shape}")
    if loss is not None and np.shape(loss) != correct.shape:
        raise UsageError(
            f"the loss table has shape {np.shape(loss)}, the correctness table {correct.shape}"
        )
    return correct.astype(bool)


def learning_speed_proxies(correct: np.ndarray, loss: np.ndarray) -> dict[str, np.ndarray]:
    """The four learning-speed proxies of the module docstring.

    Args:
      correct: bool [E, N], row e: is the model right on each example after epoch e + 1.
      loss: float [E, N], the cross-entropy of each example after each epoch.

    Returns:
      `cbtl` int64, `cumulative_loss` float64, `forgetting_events` int64,
      `first_learned_epoch` int64, each [N].

    Raises:
      UsageError: tables of other shapes.
    """
    correct = _check_table(correct, loss)
    epochs = correct.shape[0]
    forgotten = correct[:-1] & ~correct[1:]
    # Epochs from the last one backwards while still correct: the stretch at the end.
    wrong_from_end = np.flip(~correct, axis=0)
    never_wrong = ~wrong_from_end.any(axis=0)
    stretch = np.where(never_wrong, epochs, np.argmax(wrong_from_end, axis=0))
    return {
        "cbtl": correct.sum(axis=0, dtype=np.int64),
        "cumulative_loss": np.asarray(loss, dtype=np.float64).sum(axis=0),
        "forgetting_events": forgotten.sum(axis=0, dtype=np.int64),
        "first_learned_epoch": (epochs + 1 - stretch).astype(np.int64),
    }


def learning_speed_by_epoch(correct: np.ndarray, loss: np.ndarray) -> dict[str, np.ndarray]:
    """Each proxy computed from the first e epochs only, for e = 1..E: arrays [E, N].

    What the rho-by-epoch curve (the paper's Figures 8 and 9b) is drawn from.
    """
    correct = _check_table(correct, loss)
    rows = [learning_speed_proxies(correct[: e + 1], loss[: e + 1]) for e in range(len(correct))]
    return {key: np.stack([row[key] for row in rows]) for key in LEARNING_SPEED_KEYS}
