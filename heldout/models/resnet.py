"""ResNet-50 of the ImageNet release: `snt.nets.ResNet50` with its defaults (v1).

Only the calling convention is adapted (`is_training` defaults to False); the module tree,
and therefore the checkpoint keys (`model/_initial_conv/w`, `model/_block_groups/...`,
`model/_logits/{w,b}`), are exactly those of `snt.nets.ResNet50`.
"""

from __future__ import annotations

import sonnet as snt
import tensorflow as tf

from heldout.errors import ModelError


class ResNet50(snt.nets.ResNet50):
    """`snt.nets.ResNet50(num_classes)` called as `model(images, is_training=False)`.

    Inputs: float32 [B, 224, 224, 3] normalized with the ImageNet mean and std.
    """

    # The release's input size. Variable shapes do not depend on H and W, so a tiny input
    # (e.g. 32x32) is enough to create the variables before restoring.
    default_image_shape = (224, 224, 3)

    def __init__(self, num_classes: int = 1000, name: str | None = None):
        if num_classes < 2:
            raise ModelError(f"num_classes must be at least 2, got {num_classes}.")
        super().__init__(num_classes=num_classes, name=name)
        self.num_classes = num_classes

    def __call__(self, images: tf.Tensor, is_training: bool = False) -> tf.Tensor:
        images = tf.convert_to_tensor(images, dtype=tf.float32)
        return super().__call__(images, is_training=is_training)
