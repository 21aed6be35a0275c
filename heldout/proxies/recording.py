"""The per-epoch statistics of a training run: a callback on the trainer's `EpochEnd` event.

`EpochRecorder` keeps, per model and epoch, what the proxies need: correctness, loss,
p_label, p_max, entropy (against the trained-on labels), from one of `PROXY_SOURCES`:
the epoch's own training passes (free), or an inference pass over every training example
after the epoch; and, when asked, the hidden-space densities of the penultimate features.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

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
    `kde_hidden_epochs` (the 1-based epochs of those rows), `seconds` (wall time of the
    statistics, without the densities), `kde_seconds`, and `waited` (the wall time the
    training waited for the hook; less than the others where the pass overlaps). With
    an overlapping source, call `finish()` after training, before reading the tables.
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
        self.waited = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

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
        began = time.perf_counter()
        every = self.kde_every
        kde_now = self.want_kde and (
            event.epoch == event.epochs or (every > 0 and event.epoch % every == 0)
        )
        training_pass = None
        if self.source == "training_passes":
            training_pass = event.training_pass
            if training_pass is None:
                raise TrainingError(
                    "the trainer sent no training-pass logits (make it with "
                    "record_training_passes=True)"
                )
        self.epochs_seen.append(event.epoch)
        overlap = self.source != "inference_sync" and (
            event.snapshot is not None or (training_pass is not None and not kde_now)
        )
        if overlap:  # a copy of the weights now; the pass runs beside the next epoch
            self._wait()
            predict = None if training_pass is not None and not kde_now else event.snapshot()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="heldout-epoch-pass")
            self._pending = self._pool.submit(
                self._store, event.epoch, kde_now, training_pass, predict
            )
        else:
            self._store(event.epoch, kde_now, training_pass, event.predict_train)
        self.waited += time.perf_counter() - began

    def _store(self, epoch: int, kde_now: bool, training_pass, predict) -> None:
        """Keeps one epoch's statistics (and densities); runs in order, one at a time."""
        start = time.perf_counter()
        features = None
        if training_pass is not None:
            logits, seen = training_pass.logits, training_pass.seen
            if kde_now:
                features = predict(True)[1]
        else:
            logits, features = predict(kde_now)
            seen = np.ones(logits.shape[:2], dtype=bool)
        stats = softmax_statistics(logits, self.labels)  # each [M, N]
        stats["correct"] &= seen  # NaN logits (unseen) must not count as right
        for name in STATISTICS:
            self._rows[name].append(stats[name])
        self._seen.append(seen)
        self.seconds += time.perf_counter() - start
        if kde_now:
            start = time.perf_counter()
            per_model = [self._kde_of(f) for f in features]
            for name in KDE_VARIANTS:
                self._kde[name].append(np.stack([values[name] for values, _ in per_model]))
            self._bandwidth.append(np.array([h for _, h in per_model]))
            self.kde_hidden_epochs.append(epoch)
            self.kde_seconds += time.perf_counter() - start

    def _wait(self) -> None:
        """Waits for the pass in flight; its error, if any, is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def finish(self, raise_errors: bool = True) -> None:
        """Waits for the pass still in flight and stops the thread (call after training).

        `raise_errors=False` (training failed already) waits without raising the pass's
        own error, so the first failure is the one reported.
        """
        began = time.perf_counter()
        try:
            self._wait()
        except Exception:
            if raise_errors:
                raise
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            self.waited += time.perf_counter() - began

    def _kde_of(self, features: np.ndarray):
        kwargs = {} if self.kde_block is None else {"block": self.kde_block}
        return kde_proxies(features, self.labels, self.num_classes, **kwargs)

    @property
    def tables(self) -> dict[str, np.ndarray]:
        """Each statistic as [M, E, N] (models, epochs, examples)."""
        if self._pending is not None:
            raise TrainingError("an epoch pass is still in flight: call finish() first")
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
