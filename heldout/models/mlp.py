"""MLP(512, 256, classes) for MNIST-like images, the model of the published MNIST runs."""

from __future__ import annotations

from collections.abc import Sequence

import sonnet as snt
import tensorflow as tf

from heldout.errors import ModelError

DEFAULT_HIDDEN_SIZES = (512, 256)


class MLP(snt.Module):
    """Flatten → Linear(512) → ReLU → Linear(256) → ReLU → Linear(num_classes).

    Other hidden sizes (`hidden_sizes`, one or more layers) give `hidden1`, ...,
    `hidden<k>`. The attribute names (`hidden1`, `hidden2`, `logits`) are the checkpoint
    format of the experiments this project trains: `model/hidden1/w`, ... Changing them
    breaks restoring. The layers are plain attributes, not a list: a list would add a
    second path to each layer in the checkpoint's object graph.
    """

    def __init__(
        self,
        num_classes: int,
        hidden_sizes: Sequence[int] = DEFAULT_HIDDEN_SIZES,
        name: str | None = None,
    ):
        super().__init__(name=name)
        if num_classes < 2:
            raise ModelError(f"num_classes must be at least 2, got {num_classes}.")
        hidden_sizes = tuple(int(size) for size in hidden_sizes)
        if not hidden_sizes or min(hidden_sizes) < 1:
            raise ModelError(f"hidden_sizes must be one or more positive sizes, got {hidden_sizes}")
        self.num_classes = num_classes
        self.hidden_sizes = hidden_sizes
        for k, size in enumerate(hidden_sizes, start=1):
            setattr(self, f"hidden{k}", snt.Linear(size, name=f"hidden{k}"))
        self.logits = snt.Linear(num_classes, name="logits")

    @property
    def linear_layers(self) -> tuple[snt.Linear, ...]:
        """The hidden layers in order, then the logits layer."""
        hidden = (getattr(self, f"hidden{k}") for k in range(1, len(self.hidden_sizes) + 1))
        return (*hidden, self.logits)

    def __call__(self, images: tf.Tensor, is_training: bool = False) -> tf.Tensor:
        del is_training  # no batch norm or dropout: same graph in training and evaluation
        x = snt.Flatten()(tf.cast(images, tf.float32))
        *hidden, logits = self.linear_layers
        for layer in hidden:
            x = tf.nn.relu(layer(x))
        return logits(x)
