"""The CIFAR training augmentation: zero-pad, random crop back, random left-right flip.

The papers train SmallInception on CIFAR with each training image padded by 4 zero
pixels on every side, cropped back to its size at a random offset, and flipped left-right
with probability 1/2 (`/work/shared/spec/release.md`, "Inputs"). Evaluation never
augments: the aux arrays and `demo.py` see the plain images.

The random choices are drawn here with numpy, from the run's own `augment` stream
(`heldout.training.plan.run_rngs`), one epoch at a time, and only applied in TensorFlow:
a run's augmentation then depends on its seed alone, not on TensorFlow's global random
state or on what else the process trained, and the generator's state is a plain value a
mid-training checkpoint can store (`heldout.training.partial`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

PAD_PIXELS = 4  # the papers' padding


@dataclasses.dataclass(frozen=True)
class AugmentDraws:
    """One epoch's random choices for every training example it feeds.

    Attributes:
      offsets: int32 [steps, batch, 2]: (row, column) of the crop's top-left corner in
        the padded image, each in [0, 2 * pad].
      flips: bool [steps, batch]: flip that example left-right (after cropping).
    """

    offsets: np.ndarray
    flips: np.ndarray


def draw(rng: np.random.Generator, steps: int, batch: int, pad: int = PAD_PIXELS) -> AugmentDraws:
    """The choices of one epoch of `steps` batches of `batch` examples, from `rng`."""
    offsets = rng.integers(0, 2 * pad + 1, size=(steps, batch, 2), dtype=np.int32)
    flips = rng.random((steps, batch)) < 0.5
    return AugmentDraws(offsets, flips)


def apply(images, offsets, flips, pad: int = PAD_PIXELS):
    """TensorFlow: pads `images` [B, H, W, C] with zeros, crops at `offsets`, flips.

    Args:
      images: a batch (any dtype; zero padding is pixel value 0 before or after scaling).
      offsets: int32 [B, 2], as `AugmentDraws.offsets[step]`.
      flips: bool [B], as `AugmentDraws.flips[step]`.
      pad: padding on each side.

    Returns:
      The augmented batch, of the shape and dtype of `images`.
    """
    import tensorflow as tf

    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    rows = offsets[:, 0:1] + tf.range(height, dtype=offsets.dtype)  # [B, H]
    cols = offsets[:, 1:2] + tf.range(width, dtype=offsets.dtype)  # [B, W]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)  # [B, H, W + 2 pad, C]
    cropped = tf.gather(cropped, cols, axis=2, batch_dims=1)  # [B, H, W, C]
    return tf.where(flips[:, tf.newaxis, tf.newaxis, tf.newaxis], cropped[:, :, ::-1], cropped)


def apply_numpy(
    images: np.ndarray, offsets: np.ndarray, flips: np.ndarray, pad: int = PAD_PIXELS
) -> np.ndarray:
    """The same augmentation in numpy, example by example: the reference `apply` is tested
    against."""
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.empty_like(images)
    for i, ((row, col), flip) in enumerate(zip(offsets, flips, strict=True)):
        crop = padded[i, row : row + height, col : col + width]
        out[i] = crop[:, ::-1] if flip else crop
    return out
