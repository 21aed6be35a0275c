"""SmallInception (Table 2 of the ICML 2021 heldout-training paper) in Sonnet 2.

The checkpoint names of the released CIFAR-10/100 runs are made from the module attribute
paths, so the attribute layout below *is* the checkpoint format:

    model/conv1/{conv/w, bn/...}
    model/stage{1,2,3}/_body/<i>/conv1x1/{conv/w, bn/...}
    model/stage{1,2,3}/_body/<i>/conv3x3/{conv/w, bn/...}
    model/stage{1,2}/_downsample/{conv/w, bn/...}      (stage3 has no downsample)
    model/_pred/{w, b}

`bn` is `snt.BatchNorm(create_scale=True, create_offset=True)` whose moving statistics are
`snt.ExponentialMovingAverage` modules (`moving_mean/{_counter,_hidden,average}`).
Do not rename attributes or store extra trackable objects on these modules: both change
the set of checkpoint keys (`tests/models/test_build.py` compares them with the spec lists).
"""

from __future__ import annotations

from collections.abc import Sequence

import sonnet as snt
import tensorflow as tf

from heldout.errors import ModelError

# (1x1 channels, 3x3 channels) of each multi-branch block, and the stride-2 downsampling
# convolution's channels (0 = none) for the three stages.
STAGE1_BLOCKS = ((32, 32), (32, 48))
STAGE1_DOWNSAMPLE = 160
STAGE2_BLOCKS = ((112, 48), (96, 64), (80, 80), (48, 96))
STAGE2_DOWNSAMPLE = 240
STAGE3_BLOCKS = ((176, 160), (176, 160))
STAGE3_DOWNSAMPLE = 0
STEM_CHANNELS = 96
FEATURE_CHANNELS = STAGE3_BLOCKS[-1][0] + STAGE3_BLOCKS[-1][1]  # 336, input of `_pred`


class ConvBN(snt.Module):
    """Convolution without bias, then BatchNorm with scale and offset, then ReLU.

    Args:
      channels: output channels.
      kernel: square kernel size (1 or 3 here).
      stride: 2 for the stages' downsampling convolutions, else 1. Padding is SAME, so the
        output is ceil(input / stride) wide.
      name: module name (the checkpoint uses attribute names, not this).

    BatchNorm keeps Sonnet's defaults (decay 0.999, eps 1e-5), as the release did.
    """

    def __init__(
        self,
        channels: int,
        kernel: int,
        stride: int = 1,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self.conv = snt.Conv2D(
            output_channels=channels,
            kernel_shape=kernel,
            stride=stride,
            padding="SAME",
            with_bias=False,
            name="conv",
        )
        self.bn = snt.BatchNorm(create_scale=True, create_offset=True, name="bn")

    def __call__(self, x: tf.Tensor, is_training: bool = False) -> tf.Tensor:
        return tf.nn.relu(self.bn(self.conv(x), is_training=is_training))


class MultiBranch(snt.Module):
    """concat(Conv1x1(c1), Conv3x3(c3)) along channels, 1x1 branch first.

    Args:
      channels_1x1: output channels of the 1x1 branch (`conv1x1`).
      channels_3x3: output channels of the 3x3 branch (`conv3x3`).
      name: module name.
    """

    def __init__(self, channels_1x1: int, channels_3x3: int, name: str | None = None):
        super().__init__(name=name)
        self.conv1x1 = ConvBN(channels_1x1, 1, name="conv1x1")
        self.conv3x3 = ConvBN(channels_3x3, 3, name="conv3x3")

    def __call__(self, x: tf.Tensor, is_training: bool = False) -> tf.Tensor:
        return tf.concat(
            [self.conv1x1(x, is_training=is_training), self.conv3x3(x, is_training=is_training)],
            axis=-1,
        )


class Stage(snt.Module):
    """A run of multi-branch blocks (`_body`), then an optional stride-2 ConvBN.

    Args:
      blocks: (1x1 channels, 3x3 channels) of each block, in order.
      downsample_channels: channels of the stride-2 3x3 ConvBN (`_downsample`) closing
        the stage; 0 for none (the last stage, which global pooling follows).
      name: module name.
    """

    def __init__(
        self,
        blocks: Sequence[tuple[int, int]],
        downsample_channels: int,
        name: str | None = None,
    ):
        super().__init__(name=name)
        # A plain list: Sonnet/TF track it as `_body/0`, `_body/1`, ...
        self._body = [
            MultiBranch(c1, c3, name=f"block{i + 1}") for i, (c1, c3) in enumerate(blocks)
        ]
        if downsample_channels:
            self._downsample = ConvBN(downsample_channels, 3, stride=2, name="downsample")
        else:
            self._downsample = None  # None is not tracked: no checkpoint key

    def __call__(self, x: tf.Tensor, is_training: bool = False) -> tf.Tensor:
        for block in self._body:
            x = block(x, is_training=is_training)
        if self._downsample is not None:
            x = self._downsample(x, is_training=is_training)
        return x


class SmallInception(snt.Module):
    """Conv(3x3, 96) -> Stage1 -> Stage2 -> Stage3 -> global max pool -> Linear.

    Called as `model(images, is_training=False)` with float32 images [B, H, W, C]
    (CIFAR: pixels / 255, no mean subtraction); returns logits [B, num_classes].
    `is_training=True` normalizes with batch statistics and updates the moving ones.

    Args:
      num_classes: outputs of the final Linear (`_pred`): 10 for CIFAR-10, 100 for
        CIFAR-100.
      name: module name.
    """

    # The input the release used; variable shapes do not depend on H and W.
    default_image_shape = (32, 32, 3)

    def __init__(self, num_classes: int = 10, name: str | None = None):
        super().__init__(name=name)
        if num_classes < 2:
            raise ModelError(f"num_classes must be at least 2, got {num_classes}.")
        self.num_classes = num_classes
        self.conv1 = ConvBN(STEM_CHANNELS, 3, name="conv1")
        self.stage1 = Stage(STAGE1_BLOCKS, STAGE1_DOWNSAMPLE, name="stage1")
        self.stage2 = Stage(STAGE2_BLOCKS, STAGE2_DOWNSAMPLE, name="stage2")
        self.stage3 = Stage(STAGE3_BLOCKS, STAGE3_DOWNSAMPLE, name="stage3")
        self._pred = snt.Linear(num_classes, name="pred")

    def features(self, images: tf.Tensor, is_training: bool = False) -> tf.Tensor:
        """The 336-dimensional representation before the classifier."""
        x = tf.convert_to_tensor(images, dtype=tf.float32)
        x = self.conv1(x, is_training=is_training)
        x = self.stage1(x, is_training=is_training)
        x = self.stage2(x, is_training=is_training)
        x = self.stage3(x, is_training=is_training)
        return tf.reduce_max(x, axis=[1, 2])  # global max pooling

    def __call__(self, images: tf.Tensor, is_training: bool = False) -> tf.Tensor:
        return self._pred(self.features(images, is_training=is_training))
