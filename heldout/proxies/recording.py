"""The per-epoch statistics of a training run: a callback on the trainer's `EpochEnd` event.

`EpochRecorder` keeps, per model and epoch, what the proxies need: correctness, loss,
p_label, p_max, entropy (against the trained-on labels), from one of `PROXY_SOURCES`:
the epoch's own training passes (free), or an inference pass over every training example
after the epoch; and, when asked, the hidden-space densities of the penultimate features.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from heldout.errors import TrainingError
from heldout.proxies.confidence import softmax_statistics
from heldout.proxies.kde import KDE_VARIANTS, kde_proxies
from heldout.training.events import EpochEnd, Event

STATISTICS = ("correct", "loss", "p_label", "p_max", "entropy")
# training_passes: the logits of each example's training step (training mode, before the
# step's update; augmented images where the recipe augments), as Toneva et al.'s
# forgetting events and the C-score paper's "for free" CBTL. inference: an inference-mode
# pass after every epoch, from a copy of the weights, overlapping the next epoch.
# inference_sync: the same pass, run while training waits (the reference for tests).
PROXY_SOURCES = ("training_passes", "inference", "inference_sync")


class EpochRecorder:
    """Collects per-epoch statistics of one group of models; forwards every event.

    Args:
      labels: int [N], the labels the models train on (the statistics' given labels).
      num_classes: C.
      kde_hidden: also compute the hidden-space densities: at every `kde_hidden_every`-th
        epoch and the last (0: the last only).
      forward: another callback receiving every event (e.g. a progress printer).
      kde_block: rows per tile of the densities.
      source: one of `PROXY_SOURCES`; the densities always come from an inference pass.
        `training_passes` needs a trainer made with `record_training_passes=True`.

    After training: `tables[name]` [M, E, N] per statistic (`seen` [M, E, N]: False
    where the model did not train on the example that epoch; its statistics are then
    NaN and `correct` False), `kde_hidden[variant]`
    [M, E', N] and `kde_hidden_bandwidth` [M, E'] (E' epochs where they were computed),
    `kde_hidden_epochs` (the 1-based epochs of those rows), `seconds` (wall time spent
    in the hook, without the densities) and `kde_seconds`.
    """

    def __init__(
        self,
        labels: np.ndarray,
        num_classes: int,
        kde_hidden: bool = False,
        kde_hidden_every: int = 1,
        forward: Callable[[Event], None] | None = None,
        kde_block: int | None = None,
        source: str = "inference_sync",
    ):
        if source not in PROXY_SOURCES:
            raise TrainingError(f"unknown proxy source {source!r}; known: {PROXY_SOURCES}")
        self.source = source
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = int(num_classes)
        self.want_kde = bool(kde_hidden)
        self.kde_every = int(kde_hidden_every)
        self.forward = forward
        self.kde_block = kde_block
        self._rows: dict[str, list[np.ndarray]] = {name: [] for name in STATISTICS}
        self._kde: dict[str, list[np.ndarray]] = {name: [] for name in KDE_VARIANTS}
        self._seen: list[np.ndarray] = []
        self._bandwidth: list[np.ndarray] = []
        self.kde_hidden_epochs: list[int] = []
        self.epochs_seen: list[int] = []
        self.seconds = 0.0
        self.kde_seconds = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, EpochEnd):
            self._record(event)
        if self.forward is not None:
            self.forward(event)

    def _record(self, event: EpochEnd) -> None:
        if self.epochs_seen and event.epoch != self.epochs_seen[-1] + 1:
            raise TrainingError(
                f"epoch {event.epoch} after epoch {self.epochs_seen[-1]}: one recorder per group"
            )
        start = time.perf_counter()
        every = self.kde_every
        kde_now = self.want_kde and (
            event.epoch == event.epochs or (every > 0 and event.epoch % every == 0)
        )
        if self.source == "training_passes":
            if event.training_pass is None:
                raise TrainingError(
                    "the trainer sent no training-pass logits (make it with "
                    "record_training_passes=True)"
                )
            logits, seen = event.training_pass.logits, event.training_pass.seen
            features = event.predict_train(True)[1] if kde_now else None
        else:
            logits, features = event.predict_train(kde_now)
            seen = np.ones(logits.shape[:2], dtype=bool)
        stats = softmax_statistics(logits, self.labels)  # each [M, N]
        stats["correct"] &= seen  # NaN logits (unseen) must not count as right
        for name in STATISTICS:
            self._rows[name].append(stats[name])
        self._seen.append(seen)
        self.epochs_seen.append(event.epoch)
        self.seconds += time.perf_counter() - start
        if kde_now:
            start = time.perf_counter()
            per_model = [self._kde_of(f) for f in features]
            for name in KDE_VARIANTS:
                self._kde[name].append(np.stack([values[name] for values, _ in per_model]))
            self._bandwidth.append(np.array([h for _, h in per_model]))
            self.kde_hidden_epochs.append(event.epoch)
            self.kde_seconds += time.perf_counter() - start

    def finish(self) -> None:
        """Waits for what is still being computed (nothing unless the source overlaps)."""

    def _kde_of(self, features: np.ndarray):
        kwargs = {} if self.kde_block is None else {"block": self.kde_block}
        return kde_proxies(features, self.labels, self.num_classes, **kwargs)

    @property
    def tables(self) -> dict[str, np.ndarray]:
        """Each statistic as [M, E, N] (models, epochs, examples)."""
        if not self.epochs_seen:
            raise TrainingError("no epoch was recorded (was anything trained?)")
        return {name: np.stack(rows, axis=1) for name, rows in self._rows.items()}

    @property
    def seen(self) -> np.ndarray:
        """bool [M, E, N]: did the model train on the example in that epoch."""
        if not self.epochs_seen:
            raise TrainingError("no epoch was recorded (was anything trained?)")
        return np.stack(self._seen, axis=1)

    @property
    def kde_hidden(self) -> dict[str, np.ndarray]:
        """Each hidden-space density as [M, E', N]."""
        return {name: np.stack(rows, axis=1) for name, rows in self._kde.items() if rows}

    @property
    def kde_hidden_bandwidth(self) -> np.ndarray:
        return np.stack(self._bandwidth, axis=1) if self._bandwidth else np.zeros((0, 0))
