"""Each model split at its final linear layer: the penultimate activations and that layer.

logits = final_linear(model)(penultimate(model, images)) for every architecture built by
`heldout.models.build_model`; last-layer attributions (TRAK) need the two parts apart.
"""

from __future__ import annotations

import sonnet as snt
import tensorflow as tf

from heldout.errors import ModelError
from heldout.models.build import arch_of

__all__ = ["final_linear", "penultimate"]


def final_linear(model: snt.Module) -> snt.Linear:
    """The final `snt.Linear` (weights `w` [d, classes], bias `b` [classes]).

    Raises:
      ModelError: a model `heldout.models` did not build.
    """
    arch = arch_of(model)
    if arch == "mlp":
        return model.logits
    if arch == "small_inception":
        return model._pred
    if arch == "resnet50":
        return model._logits
    raise ModelError(f"{type(model).__name__}: no known final linear layer")


def _resnet_features(model: snt.nets.ResNet, images: tf.Tensor, is_training: bool) -> tf.Tensor:
    # `snt.nets.ResNet.__call__` up to its average pooling (v1 and v2 alike).
    net = model._initial_conv(images)
    if not model._resnet_v2:
        net = tf.nn.relu(model._initial_batchnorm(net, is_training=is_training))
    net = tf.nn.max_pool2d(net, ksize=3, strides=2, padding="SAME")
    for block_group in model._block_groups:
        net = block_group(net, is_training)
    if model._resnet_v2:
        net = tf.nn.relu(model._final_batchnorm(net, is_training=is_training))
    return tf.reduce_mean(net, axis=[1, 2])


def penultimate(model: snt.Module, images: tf.Tensor, is_training: bool = False) -> tf.Tensor:
    """float32 [B, d]: the input of `final_linear(model)` for `images`.

    d is 256 for the MLP (512, 256), 336 for SmallInception and 2048 for ResNet-50.

    Raises:
      ModelError: a model `heldout.models` did not build.
    """
    arch = arch_of(model)
    images = tf.cast(images, tf.float32)
    if arch == "mlp":
        x = snt.Flatten()(images)
        for layer in model.linear_layers[:-1]:
            x = tf.nn.relu(layer(x))
        return x
    if arch == "small_inception":
        return model.features(images, is_training=is_training)
    if arch == "resnet50":
        return _resnet_features(model, images, is_training)
    raise ModelError(f"{type(model).__name__}: no known penultimate layer")
