"""The per-epoch passes over the training examples that the proxies' statistics read.

The stacked MLPs' inference pass, on the live variables or on a copy of them taken at
the end of an epoch (so that it can run beside the next epoch), and the training-pass
table of a model trained one at a time: its steps' logits put back in example order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from heldout.errors import TrainingError
from heldout.training.events import TrainingPass

# Rows per inference call: large products, bounded memory.
PREDICT_CHUNK = 8192

Predict = Callable[[bool], tuple[np.ndarray, np.ndarray | None]]


def stack_predict(images_flat, infer, with_features: bool):
    """Every stacked model on every row of `images_flat` in inference mode, in order.

    `infer(images)` -> (features [M, B, H], logits [M, B, C]). Returns (logits
    [M, N, C], features [M, N, H] or None unless `with_features`).
    """
    logits, features = [], []
    n = int(images_flat.shape[0])
    for start in range(0, n, PREDICT_CHUNK):
        hidden, out = infer(images_flat[start : start + PREDICT_CHUNK])
        logits.append(out.numpy())
        if with_features:
            features.append(hidden.numpy())
    return (
        np.concatenate(logits, axis=1),
        np.concatenate(features, axis=1) if with_features else None,
    )


def stack_snapshot(stack, images_flat) -> Predict:
    """`EpochEnd.snapshot` of a stack: a `predict_train` of a copy of its weights now,
    valid from any thread while the variables move on."""
    weights = [tf.constant(w.numpy()) for w in stack.w]
    biases = [tf.constant(b.numpy()) for b in stack.b]

    def infer(images):
        return stack.infer_snapshot(weights, biases, images)

    return lambda with_features: stack_predict(images_flat, infer, with_features)


def single_predict(model, images) -> Predict:
    """`EpochEnd.predict_train` of one model (logits only; no penultimate features)."""

    def predict(with_features: bool):
        if with_features:
            raise TrainingError("penultimate features are recorded for the stacked MLPs only")
        logits = []
        for start in range(0, int(images.shape[0]), PREDICT_CHUNK):
            x = tf.cast(images[start : start + PREDICT_CHUNK], tf.float32) / 255.0
            logits.append(model(x, is_training=False).numpy())
        return np.concatenate(logits)[np.newaxis], None

    return predict


def training_pass(batches: np.ndarray, step_logits, count: int, num_train: int) -> TrainingPass:
    """One model's training-pass table from its epoch's steps.

    Args:
      batches: int [S, B], the epoch's batches (`heldout.training.plan.epoch_batches`).
      step_logits: float32 [S, B, C], each step's logits (before its update).
      count: the examples of the subset: positions past it repeat earlier examples to
        fill the last batch, and are left out so that no example counts twice.
      num_train: N.
    """
    step_logits = np.asarray(step_logits, dtype=np.float32)
    order = np.asarray(batches).reshape(-1)[:count]
    logits = step_logits.reshape(-1, step_logits.shape[-1])[:count]
    table = np.full((1, num_train, logits.shape[-1]), np.nan, dtype=np.float32)
    table[0, order] = logits
    seen = np.zeros((1, num_train), dtype=bool)
    seen[0, order] = True
    return TrainingPass(table, seen)
