"""Last-layer TRAK features of restored runs: penultimate activations and margin gradients.

Restores each run as `heldout.evaluation.evaluate` does (one `ModelCache`, restored in
place), and computes in batches h (the final linear layer's input) and dphi/dz (phi the
logit margin), from which `heldout.scores.attribution.trak` builds the gradient features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from heldout.datasets import DataSource
from heldout.errors import DatasetError
from heldout.evaluation.evaluate import DEFAULT_BATCH_SIZE, ModelCache, resolve_model
from heldout.models.final_layer import final_linear, penultimate
from heldout.scores.attribution.trak import (
    DEFAULT_RIDGE,
    LastLayerFeatures,
    LastLayerTrak,
    compute_trak_model,
)

__all__ = ["compute_last_layer_trak", "last_layer_features", "margin_and_gradient"]


def margin_and_gradient(logits: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """phi = z_y - logsumexp_{k != y} z_k [B] and dphi/dz [B, classes], in float32.

    dphi/dz is 1 at the label and minus the softmax over the other classes elsewhere.
    """
    logits = tf.cast(logits, tf.float32)
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(logits)[-1], dtype=tf.float32)
    is_label = one_hot > 0.5
    others = tf.where(is_label, tf.constant(-np.inf, tf.float32), logits)
    label_logit = tf.reduce_sum(tf.where(is_label, logits, 0.0), axis=-1)
    phi = label_logit - tf.reduce_logsumexp(others, axis=-1)
    gradient = one_hot - tf.nn.softmax(others, axis=-1)
    return phi, gradient


def _features_step(model):
    linear = final_linear(model)

    @tf.function
    def step(images, labels):
        h = penultimate(model, images, is_training=False)
        phi, gradient = margin_and_gradient(linear(h), labels)
        return h, gradient, phi

    return step


def last_layer_features(model, dataset: tf.data.Dataset, size: int, step=None):
    """The features of every example of a split, in index order.

    Args:
      model: a model of `heldout.models` (restored).
      dataset: batches {"image", "label", "index"} (labels: those the run trained on).
      size: the split's size; every index in 0..size-1 must come exactly once.
      step: a traced step of `model` to reuse (None: traced here).

    Returns:
      `LastLayerFeatures` of the `size` examples, float32.

    Raises:
      DatasetError: the batches leave an index out, repeat one or exceed `size`.
    """
    step = step or _features_step(model)
    parts: list[list] = [[], [], [], []]
    for batch in dataset:
        out = step(tf.cast(batch["image"], tf.float32), batch["label"])
        for part, value in zip(parts, (*out, batch["index"]), strict=True):
            part.append(value)
    if not parts[3]:
        raise DatasetError(f"the dataset yielded no examples; expected {size}")
    h, gradient, phi, index = (tf.concat(p, axis=0).numpy() for p in parts)
    index = index.astype(np.int64)
    if (
        index.size != size
        or index.min() < 0
        or index.max() >= size
        or (np.unique(index).size != size)
    ):
        raise DatasetError(
            f"the dataset's indices do not cover 0..{size - 1} once each "
            f"({index.size} examples); another dataset than the run's?"
        )
    order = np.argsort(index)
    return LastLayerFeatures(
        h[order].astype(np.float32),
        gradient[order].astype(np.float32),
        phi[order].astype(np.float32),
    )


def compute_last_layer_trak(
    runs: Sequence,
    source: DataSource,
    meta,
    num_train: int,
    num_test: int,
    test_positions: np.ndarray | None = None,
    ridge: float = DEFAULT_RIDGE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    cache: ModelCache | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> LastLayerTrak:
    """Last-layer TRAK averaged over the checkpoints of `runs`.

    Pass estimation runs only: no evaluation run's checkpoint may reach an estimate.
    The features have dimension (d + 1) x classes: 2 570 for the MLP (512, 256) on 10
    classes, 3 370 for SmallInception on CIFAR-10 (33 700 on CIFAR-100), 2 049 000 for
    ResNet-50 on ImageNet (refused: it needs a projection). G^T G is built from float32
    blocks of all `num_train` training examples and summed in float64.

    Args:
      runs: `heldout.release.layout.Run`s with a checkpoint.
      source: the data they were trained on, with the trained-on labels
        (`heldout.datasets.relabeled.experiment_source`).
      meta: the experiment's `ExperimentMeta` (architecture, classes, image shape).
      num_train, num_test: the full split sizes.
      test_positions: the test examples scored (positions in the test split); None: all.
      ridge: lambda relative to the mean diagonal of G^T G.
      batch_size: images per step.
      cache: a `ModelCache` to restore into (None: a new one).
      progress: wraps the runs' iteration (a tqdm bar); None: none.

    Returns:
      The `LastLayerTrak` ([n_test scored, num_train]) with the runs' ids.

    Raises:
      ModelError, CheckpointError, DatasetError: a run cannot be restored or its data
        does not fit; UsageError: features too large for G^T G.
    """
    runs = list(runs)
    cache = cache if cache is not None else ModelCache()
    arch, num_classes, image_shape = resolve_model(runs[0], source, meta=meta)
    cached = cache.get(arch, num_classes, image_shape)
    step = _features_step(cached.model)
    models = []
    for run in progress(runs) if progress else runs:
        cached.target.restore(run.path)
        train = last_layer_features(
            cached.model, cache.dataset(source, "train", batch_size), num_train, step
        )
        test = last_layer_features(
            cached.model, cache.dataset(source, "test", batch_size), num_test, step
        )
        if test_positions is not None:
            positions = np.asarray(test_positions, dtype=np.int64)
            test = LastLayerFeatures(
                test.penultimate[positions], test.output_gradient[positions], test.margin[positions]
            )
        models.append(compute_trak_model(train, test, ridge))
    return LastLayerTrak(tuple(models), tuple(int(run.run_id) for run in runs))
