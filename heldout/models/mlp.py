"""MLP(512, 256, classes) for MNIST-like images, the model of the published MNIST runs."""

from __future__ import annotations

import sonnet as snt
import tensorflow as tf

from heldout.errors import ModelError


class MLP(snt.Module):
    """Flatten → Linear(512) → ReLU → Linear(256) → ReLU → Linear(num_classes).

    The attribute names (`hidden1`, `hidden2`, `logits`) are the checkpoint format of the
    experiments this project trains: `model/hidden1/w`, ... Changing them breaks restoring.
    """

    def __init__(
        self,
        num_classes: int,
        hidden_sizes: tuple[int, int] = (512, 256),
        name: str | None = None,
    ):
        super().__init__(name=name)
        if num_classes < 2:
            raise ModelError(f"num_classes must be at least 2, got {num_classes}.")
        self.num_classes = num_classes
        self.hidden1 = snt.Linear(hidden_sizes[0], name="hidden1")
        self.hidden2 = snt.Linear(hidden_sizes[1], name="hidden2")
        self.logits = snt.Linear(num_classes, name="logits")

    def __call__(self, images: tf.Tensor, is_training: bool = False) -> tf.Tensor:
        del is_training  # no batch norm or dropout: same graph in training and evaluation
        x = snt.Flatten()(tf.cast(images, tf.float32))
        x = tf.nn.relu(self.hidden1(x))
        x = tf.nn.relu(self.hidden2(x))
        return self.logits(x)
