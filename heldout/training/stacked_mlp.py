"""Many MLPs trained at once: stacked weights and batched matrix products.

`M` independent MLPs live in stacked variables (`w[i]` is `[M, fan_in, fan_out]`), so
each step is a few batched GEMMs while each model keeps its own examples, order and
initialisation; a whole epoch runs in one `tf.function`. The backward pass is written out
and the optimizer is Sonnet's momentum, so a model is the one the published code trains.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from heldout.errors import TrainingError

# MLP(512, 256, 10) on flattened 28x28 images: the model of the published MNIST runs.
DEFAULT_LAYER_SIZES = (784, 512, 256, 10)


@dataclasses.dataclass(frozen=True)
class MLPParams:
    """One model's weights as numpy arrays: `weights[i]` `[fan_in, fan_out]`, `biases[i]`."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.weights[0].shape[0],) + tuple(w.shape[1] for w in self.weights)


def truncated_normal(rng: np.random.Generator, shape, stddev: float) -> np.ndarray:
    """Normal(0, stddev) with draws beyond 2 stddev redrawn, as `tf.random.truncated_normal`."""
    values = rng.standard_normal(shape)
    while True:
        outside = np.abs(values) > 2.0
        count = int(outside.sum())
        if count == 0:
            break
        values[outside] = rng.standard_normal(count)
    return (values * stddev).astype(np.float32)


def init_params(rng: np.random.Generator, layer_sizes=DEFAULT_LAYER_SIZES) -> MLPParams:
    """Sonnet's `snt.Linear` default initialisation, drawn from `rng` (so it is seedable).

    Weights: truncated normal with stddev 1/sqrt(fan_in); biases: zero.
    """
    weights, biases = [], []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:], strict=True):
        weights.append(truncated_normal(rng, (fan_in, fan_out), 1.0 / np.sqrt(fan_in)))
        biases.append(np.zeros(fan_out, dtype=np.float32))
    return MLPParams(tuple(weights), tuple(biases))


class StackedMLP(tf.Module):
    """`num_models` ReLU MLPs with stacked parameters and momentum accumulators.

    Args:
      num_models: M, the number of models trained together.
      layer_sizes: input size, hidden sizes, number of classes. Default (784, 512, 256,
        10): the published MNIST MLP on flattened 28x28 images.
      momentum: SGD momentum; 0.9 as in the paper (Table 2).
      weight_decay: L2 penalty `weight_decay / 2 * ||W||^2` on each weight matrix (not
        the biases), applied as `weight_decay * W` added to the weight's gradient. 0 (the
        default, as in the paper's MNIST runs) leaves the traced step exactly as without it.
      compute_dtype: dtype of the matrix products. float32 by default; tf.bfloat16 runs
        the products in bfloat16 (faster where the CPU has AVX512-BF16 or on GPUs) while
        weights, accumulators and updates stay float32.
    """

    def __init__(
        self,
        num_models: int,
        layer_sizes: tuple[int, ...] = DEFAULT_LAYER_SIZES,
        momentum: float = 0.9,
        compute_dtype=tf.float32,
        weight_decay: float = 0.0,
        name: str | None = None,
    ):
        super().__init__(name=name)
        if num_models < 1:
            raise TrainingError(f"num_models must be at least 1, got {num_models}.")
        if len(layer_sizes) < 2:
            raise TrainingError(
                f"layer_sizes needs an input and an output size, got {layer_sizes}."
            )
        self.num_models = int(num_models)
        self.layer_sizes = tuple(int(s) for s in layer_sizes)
        self.momentum = float(momentum)
        if not weight_decay >= 0.0:
            raise TrainingError(f"weight_decay must be at least 0, got {weight_decay}.")
        self.weight_decay = float(weight_decay)
        self.compute_dtype = tf.as_dtype(compute_dtype)
        pairs = list(zip(self.layer_sizes[:-1], self.layer_sizes[1:], strict=True))
        m = self.num_models
        self.w = [tf.Variable(tf.zeros([m, i, o]), name=f"w{k}") for k, (i, o) in enumerate(pairs)]
        self.b = [tf.Variable(tf.zeros([m, o]), name=f"b{k}") for k, (_, o) in enumerate(pairs)]
        self._w_accum = [
            tf.Variable(tf.zeros_like(v), name=f"w{k}_momentum") for k, v in enumerate(self.w)
        ]
        self._b_accum = [
            tf.Variable(tf.zeros_like(v), name=f"b{k}_momentum") for k, v in enumerate(self.b)
        ]

    # -- parameters ----------------------------------------------------------------------
    def set_params(self, params: list[MLPParams]) -> None:
        """Loads one `MLPParams` per model and zeroes the momentum accumulators."""
        if len(params) != self.num_models:
            raise TrainingError(
                f"expected {self.num_models} models' parameters, got {len(params)}."
            )
        for p in params:
            if p.layer_sizes != self.layer_sizes:
                raise TrainingError(
                    f"parameters have layer sizes {p.layer_sizes}, this stack {self.layer_sizes}."
                )
        for k in range(len(self.w)):
            self.w[k].assign(np.stack([p.weights[k] for p in params]))
            self.b[k].assign(np.stack([p.biases[k] for p in params]))
        for accum in self._w_accum + self._b_accum:
            accum.assign(tf.zeros_like(accum))

    def get_params(self, model: int) -> MLPParams:
        """Model `model`'s weights, unstacked, as numpy arrays."""
        return MLPParams(
            tuple(w[model].numpy() for w in self.w), tuple(b[model].numpy() for b in self.b)
        )

    # -- math ------------------------------------------------------------------------------
    def _forward(self, x, weights=None, biases=None):
        """x: [M, B, in] in compute dtype. Returns (hidden activations, logits float32).

        `weights`, `biases`: stacked tensors to use instead of the variables (a snapshot).
        """
        hidden = []
        h = x
        last = len(self.w) - 1
        weights = self.w if weights is None else weights
        biases = self.b if biases is None else biases
        for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
            z = tf.matmul(h, tf.cast(w, self.compute_dtype))
            z = tf.cast(z, tf.float32) + b[:, tf.newaxis, :]
            if k == last:
                return hidden, z
            h = tf.cast(tf.nn.relu(z), self.compute_dtype)
            hidden.append(h)
        raise AssertionError("unreachable")

    def _train_step(self, x, labels, learning_rate):
        """One SGD-momentum step of every model on its own batch.

        Returns (loss, correct) [M], summed over the batch, and the logits [M, B, C] of
        the forward pass the step took (training mode, before its update).
        """
        hidden, logits = self._forward(x)
        batch = tf.cast(tf.shape(logits)[1], tf.float32)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        correct = tf.equal(tf.argmax(logits, axis=-1, output_type=labels.dtype), labels)
        # d(mean loss)/d(logits) = (softmax - onehot) / B, per model.
        grad = (tf.nn.softmax(logits) - tf.one_hot(labels, self.layer_sizes[-1])) / batch
        inputs = [x] + hidden
        # Bias gradients as [M, 1, B] x [M, B, out] products: unlike tf.reduce_sum over the
        # middle axis, whose summation order depends on the slot's position in the stack
        # (for narrow layers), this gives each model the same bits whatever the stack size.
        ones = tf.ones([self.num_models, 1, tf.shape(logits)[1]], tf.float32)
        for k in reversed(range(len(self.w))):
            g = tf.cast(grad, self.compute_dtype)
            grad_w = tf.cast(tf.matmul(inputs[k], g, transpose_a=True), tf.float32)
            grad_b = tf.matmul(ones, grad)[:, 0, :]
            if self.weight_decay:  # a Python float: no extra op at all when 0
                grad_w += self.weight_decay * self.w[k]
            if k > 0:
                grad_h = tf.matmul(g, tf.cast(self.w[k], self.compute_dtype), transpose_b=True)
                grad = tf.raw_ops.ReluGrad(
                    gradients=tf.cast(grad_h, tf.float32), features=tf.cast(inputs[k], tf.float32)
                )
            self._apply(self.w[k], self._w_accum[k], grad_w, learning_rate)
            self._apply(self.b[k], self._b_accum[k], grad_b, learning_rate)
        hits = tf.reduce_sum(tf.cast(correct, tf.int32), axis=1)
        return tf.reduce_sum(loss, axis=1), hits, logits

    def _apply(self, var, accum, grad, learning_rate):
        tf.raw_ops.ResourceApplyMomentum(
            var=var.handle,
            accum=accum.handle,
            lr=learning_rate,
            grad=grad,
            momentum=tf.constant(self.momentum, tf.float32),
            use_locking=False,
        )

    def _images(self, images_u8, index):
        """Gathers [M, B] rows of the flattened uint8 images and scales them to [0, 1]."""
        x = tf.cast(tf.gather(images_u8, index), tf.float32) / 255.0
        return tf.cast(x, self.compute_dtype)

    # -- epochs ----------------------------------------------------------------------------
    @tf.function
    def train_epoch(self, images_u8, labels, batch_index, learning_rates):
        """Runs every step of one epoch.

        Args:
          images_u8: uint8 [N, in], the flattened training images (device resident).
          labels: int32 [N], the labels the models train on.
          batch_index: int32 [S, M, B]: step s trains model m on rows batch_index[s, m].
          learning_rates: float32 [S], the learning rate of each step.

        Returns:
          (loss_sum, correct) float32 / int32 [M]: summed over the epoch's examples.
        """
        loss_sum, correct, _ = self._epoch(images_u8, labels, batch_index, learning_rates, False)
        return loss_sum, correct

    @tf.function
    def train_epoch_recorded(self, images_u8, labels, batch_index, learning_rates, num_examples):
        """`train_epoch`, also keeping the logits each step's forward pass computed.

        The training-pass statistics, for free: the logits of the training step itself
        (training mode, before its update), scattered by example index. Only the first
        `num_examples` positions of each model's epoch order count (the rest of the last
        batch repeats earlier examples: `heldout.training.plan.epoch_batches`), so no
        example is recorded twice.

        Args:
          images_u8, labels, batch_index, learning_rates: as `train_epoch`.
          num_examples: int32 scalar, the examples of each model's subset.

        Returns:
          (loss_sum, correct) as `train_epoch`; logits float32 [M, N, C], NaN where the
          model did not see the example this epoch; seen bool [M, N].
        """
        loss_sum, correct, per_step = self._epoch(
            images_u8, labels, batch_index, learning_rates, True
        )
        m, classes = self.num_models, self.layer_sizes[-1]
        order = tf.reshape(tf.transpose(batch_index, [1, 0, 2]), [m, -1])[:, :num_examples]
        logits = tf.reshape(tf.transpose(per_step, [1, 0, 2, 3]), [m, -1, classes])
        logits = logits[:, :num_examples]
        models = tf.broadcast_to(tf.range(m)[:, tf.newaxis], tf.shape(order))
        where = tf.stack([models, order], axis=-1)  # [M, num_examples, 2]
        n = tf.shape(labels)[0]
        table = tf.tensor_scatter_nd_update(
            tf.fill([m, n, classes], tf.constant(np.nan, tf.float32)), where, logits
        )
        seen = tf.tensor_scatter_nd_update(
            tf.zeros([m, n], tf.bool), where, tf.ones(tf.shape(order), tf.bool)
        )
        return loss_sum, correct, table, seen

    def _epoch(self, images_u8, labels, batch_index, learning_rates, record: bool):
        """The steps of `train_epoch`; with `record`, also each step's logits [S, M, B, C]."""
        steps = tf.shape(batch_index)[0]
        loss_sum = tf.zeros([self.num_models], tf.float32)
        correct = tf.zeros([self.num_models], tf.int32)
        # Empty (and never written) without `record`: autograph wants a loop variable.
        per_step = tf.TensorArray(tf.float32, size=steps if record else 0)
        for s in tf.range(steps):
            index = batch_index[s]
            loss, hits, logits = self._train_step(
                self._images(images_u8, index), tf.gather(labels, index), learning_rates[s]
            )
            loss_sum += loss
            correct += hits
            if record:
                per_step = per_step.write(s, logits)
        return loss_sum, correct, per_step.stack() if record else None

    @tf.function
    def infer(self, images_u8):
        """Every model on the same examples, in inference mode (the per-epoch statistics).

        images_u8: uint8 [B, in]. Returns (penultimate-layer activations float32 [M, B, H],
        logits float32 [M, B, C]).
        """
        x = tf.cast(tf.cast(images_u8, tf.float32) / 255.0, self.compute_dtype)[tf.newaxis]
        hidden, logits = self._forward(x)
        return tf.cast(hidden[-1], tf.float32), logits

    @tf.function
    def infer_snapshot(self, weights, biases, images_u8):
        """`infer` from stacked weights and biases given as tensors (a copy of the
        variables), so it can run in another thread while the variables move on."""
        x = tf.cast(tf.cast(images_u8, tf.float32) / 255.0, self.compute_dtype)[tf.newaxis]
        hidden, logits = self._forward(x, weights, biases)
        return tf.cast(hidden[-1], tf.float32), logits

    @tf.function
    def evaluate(self, images_u8, labels, batch_size):
        """Summed cross-entropy and correct predictions of every model on the same examples.

        images_u8: uint8 [N, in]; labels: int32 [N]; evaluated in chunks of batch_size.

        Returns:
          (loss_sum float32 [M], correct int32 [M]).
        """
        n = tf.shape(labels)[0]
        loss_sum = tf.zeros([self.num_models], tf.float32)
        correct = tf.zeros([self.num_models], tf.int32)
        for start in tf.range(0, n, batch_size):
            end = tf.minimum(start + batch_size, n)
            x = tf.cast(images_u8[start:end], tf.float32) / 255.0
            # [1, B, in] broadcasts against the stacked [M, in, out] weights.
            x = tf.cast(x, self.compute_dtype)[tf.newaxis]
            _, logits = self._forward(x)
            batch_labels = tf.broadcast_to(labels[tf.newaxis, start:end], tf.shape(logits)[:2])
            loss_sum += tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=batch_labels, logits=logits),
                axis=1,
            )
            predicted = tf.argmax(logits, axis=-1, output_type=labels.dtype)
            correct += tf.reduce_sum(tf.cast(tf.equal(predicted, batch_labels), tf.int32), axis=1)
        return loss_sum, correct
