"""The tf-gpu influence backend: the bit-packed runs' 0/1 products on a GPU via TensorFlow.

Blocks of at most `BLOCK_RUNS` runs are multiplied as float16 (exact: integer sums of at
most 2048), summed in float32 and turned into influence exactly as on the CPU, so results
are bit for bit the other backends'; the top-k is taken per tile on the device.
TensorFlow is imported on first use only; this is the one module of `heldout.scores`
that imports it, and it is reached only through the registry's dotted path.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np

from heldout.scores.backends.bitplanes import BitPlaneBackend, PlaneProblem

BLOCK_RUNS = 2048  # float16 holds every integer up to 2048 exactly
_BLOCK_WORDS = BLOCK_RUNS // 64
_TILE_ROWS = 8192  # test examples per tile
_TILE_COLUMNS = 32768  # training examples per tile: float32 sums of a tile are 1 GiB
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")


def why_no_gpu() -> str | None:
    """None when TensorFlow sees a GPU; else what is missing, in words.

    Cheap when there is no GPU: TensorFlow (seconds to import) is imported only when it
    is installed and a GPU device file exists.
    """
    if importlib.util.find_spec("tensorflow") is None:
        return "TensorFlow is not installed"
    if not any(os.path.exists(path) for path in _GPU_DEVICE_FILES):
        return "no GPU device on this machine"
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return "TensorFlow sees no GPU (a CPU-only TensorFlow, or no CUDA libraries?)"
    return None


def _device(device: str | None) -> str:
    return "/GPU:0" if device is None else device


class _DeviceProblem:
    """The runs on the device, and the per-tile influence computation."""

    def __init__(self, problem: PlaneProblem, device: str | None):
        import tensorflow as tf

        self.tf = tf
        self.device = _device(device)
        self.num_words = problem.tests.shape[0]
        self.num_test, self.num_train = problem.tests.shape[1], problem.trains.shape[1]
        self.num_runs = problem.num_runs
        with tf.device(self.device):
            # uint8 [W, size, 8]: byte b of word w holds runs 64w + 8b .. 64w + 8b + 7.
            self.test_bytes = tf.constant(_as_bytes(problem.tests))
            self.train_bytes = tf.constant(_as_bytes(problem.trains))
            self.correct_count = tf.constant(np.asarray(problem.correct_count, np.float64))
            self.count_in = tf.constant(np.asarray(problem.count_in, np.float64))
            self.scale = tf.constant(np.asarray(problem.scale, np.float32))
            self.shifts = tf.constant(np.arange(8, dtype=np.uint8))
            # Every test example's runs, block by block: float16 [block runs, N_test].
            self.test_blocks = [
                self._unpack(self.test_bytes, w0, slice(0, self.num_test))
                for w0 in range(0, self.num_words, _BLOCK_WORDS)
            ]

    def _unpack(self, packed, word0: int, columns: slice):
        """float16 [64 * words, width]: the 0/1 runs of one block for some examples."""
        tf = self.tf
        words = packed[word0 : word0 + _BLOCK_WORDS, columns.start : columns.stop]
        bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(words[..., None], self.shifts), 1)
        bits = tf.transpose(bits, [0, 2, 3, 1])  # [words, byte, bit, width]: run order
        return tf.cast(tf.reshape(bits, [-1, columns.stop - columns.start]), tf.float16)

    def column_blocks(self, columns: slice) -> list:
        with self.tf.device(self.device):
            return [
                self._unpack(self.train_bytes, w0, columns)
                for w0 in range(0, self.num_words, _BLOCK_WORDS)
            ]

    def tile(self, rows: slice, columns: slice, train_blocks: list):
        """float32 [rows, columns] of influence, on the device."""
        tf = self.tf
        with tf.device(self.device):
            counts = None
            for test_block, train_block in zip(self.test_blocks, train_blocks, strict=True):
                # Exact: 0/1 inputs, integer sums of at most BLOCK_RUNS (float16 output).
                product = tf.matmul(
                    test_block[:, rows.start : rows.stop], train_block, transpose_a=True
                )
                product = tf.cast(product, tf.float32)
                counts = product if counts is None else counts + product
            numerator = float(self.num_runs) * tf.cast(counts, tf.float64) - (
                self.correct_count[rows.start : rows.stop, None]
                * self.count_in[None, columns.start : columns.stop]
            )
            return tf.cast(numerator, tf.float32) * self.scale[None, columns.start : columns.stop]


def _as_bytes(planes: np.ndarray) -> np.ndarray:
    planes = np.ascontiguousarray(planes, dtype="<u8")  # byte order: least significant first
    return planes.view(np.uint8).reshape(planes.shape[0], planes.shape[1], 8)


def _tiles(size: int, step: int):
    for start in range(0, size, step):
        yield slice(start, min(size, start + step))


def dense_influence(problem: PlaneProblem, device: str | None = None) -> np.ndarray:
    """The dense influence matrix float32 [N_test, N], computed on `device` (default GPU).

    Args:
      problem: the runs' word planes and counts (`PlaneProblem`).
      device: a TensorFlow device name (the tests use "/CPU:0").
    """
    tiled = _DeviceProblem(problem, device)
    out = np.empty((tiled.num_test, tiled.num_train), dtype=np.float32)
    for columns in _tiles(tiled.num_train, _TILE_COLUMNS):
        blocks = tiled.column_blocks(columns)
        for rows in _tiles(tiled.num_test, _TILE_ROWS):
            out[rows, columns] = tiled.tile(rows, columns, blocks).numpy()
    return out


def topk_influence(
    problem: PlaneProblem, k: int, device: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each test example's k largest influences, merged tile by tile on the device.

    Returns:
      (values float32 [N_test, k], index int64 [N_test, k]) as
      `heldout.scores.backends.popcount.topk_influence` (non-finite values mark empty slots).
    """
    tiled = _DeviceProblem(problem, device)
    tf = tiled.tf
    row_tiles = list(_tiles(tiled.num_test, _TILE_ROWS))
    with tf.device(tiled.device):
        best = [
            (
                tf.fill([rows.stop - rows.start, k], tf.constant(-np.inf, tf.float32)),
                tf.fill([rows.stop - rows.start, k], tf.constant(-1, tf.int64)),
            )
            for rows in row_tiles
        ]
        for columns in _tiles(tiled.num_train, _TILE_COLUMNS):
            blocks = tiled.column_blocks(columns)
            for i, rows in enumerate(row_tiles):
                values = tiled.tile(rows, columns, blocks)
                values = tf.where(tf.math.is_nan(values), tf.constant(-np.inf), values)
                top = tf.math.top_k(values, k=min(k, columns.stop - columns.start))
                # Earlier tiles (smaller indices) first: top_k keeps the lower position
                # first among equal values, so ties go to the smaller training index.
                merged_values = tf.concat([best[i][0], top.values], axis=1)
                merged_index = tf.concat(
                    [best[i][1], tf.cast(top.indices, tf.int64) + columns.start], axis=1
                )
                keep = tf.math.top_k(merged_values, k=k)
                best[i] = (keep.values, tf.gather(merged_index, keep.indices, batch_dims=1))
        values = np.concatenate([v.numpy() for v, _ in best]) if best else np.empty((0, k))
        index = np.concatenate([i.numpy() for _, i in best]) if best else np.empty((0, k))
    return values.astype(np.float32), index.astype(np.int64)


def warm_up(topk: bool = False) -> None:
    """Imports TensorFlow and starts its GPU (seconds), so that the real call does not."""
    del topk  # every tile runs the same ops
    import tensorflow as tf

    with tf.device(_device(None)):
        tf.constant(0.0).numpy()


class TfGpuBackend(BitPlaneBackend):
    """The tf-gpu backend (`InfluenceBackend`): the bit-packed runs' products on a GPU.

    Registered by this module's dotted path, imported only when used, so that nothing
    else in `heldout.scores` imports TensorFlow.
    """

    name = "tf-gpu"
    streams_dense = False

    def why_unavailable(self) -> str | None:
        missing = why_no_gpu()
        return None if missing is None else f"cannot run here: {missing}"

    def kernels(self):
        return sys.modules[__name__]


BACKEND = TfGpuBackend()
