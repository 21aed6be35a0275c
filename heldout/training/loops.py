"""The training loops: a group of models of one subset ratio, trained and written as runs.

The rest of `heldout.training` decides what to train (configuration, data, each run's
subset and random streams, resuming, the experiment record) without TensorFlow; this
module does it with TensorFlow: MLPs `models_per_step` at a time with stacked weights
(`heldout.training.stacked_mlp`), other architectures one at a time. It then evaluates
each finished model through `heldout.evaluation.evaluate` (the code path `demo.py` re-evaluates it
with) and writes it as a run with `heldout.release.layout.write_run`.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import sonnet as snt
import tensorflow as tf

from heldout.errors import TrainingError
from heldout.evaluation import evaluate as evaluation
from heldout.models import build_model, checkpoints, ensure_variables
from heldout.release import layout as release
from heldout.release import outputs
from heldout.release.aux_arrays import aux_from_predictions
from heldout.scores import soft_cscore
from heldout.training import augment as augment_ops
from heldout.training import divergence, epoch_passes, partial, precision, stacked_mlp
from heldout.training.config import TrainingConfig
from heldout.training.data import TrainingData
from heldout.training.events import (
    EpochEnd,
    EpochLog,
    Event,
    RunDiverged,
    RunWritten,
    TrainingPass,
)
from heldout.training.plan import epoch_batches, learning_rates, run_rngs, run_subset
from heldout.training.run_record import write_run_record


class Trainer:
    """Holds the device-resident data and the compiled steps across groups of runs.

    With `record_training_passes`, each `EpochEnd` of the stacked MLPs carries the
    epoch's training-pass logits (`heldout.training.events.TrainingPass`).
    """

    def __init__(
        self,
        config: TrainingConfig,
        data: TrainingData,
        experiment_dir: str | Path,
        notify: Callable[[Event], None],
        record_training_passes: bool = False,
    ):
        self.config = config
        self.record_training_passes = record_training_passes
        self.data = data
        self.experiment_dir = Path(experiment_dir)
        self.notify = notify
        n = data.num_train
        self.images_flat = tf.constant(data.train_images.reshape(n, -1))
        self.labels = tf.constant(data.train_labels.astype(np.int32))
        val = min(config.val_examples, data.test_labels.size)
        self.val_images = tf.constant(data.test_images[:val].reshape(val, -1))
        self.val_labels = tf.constant(data.test_labels[:val].astype(np.int32))
        self._stacks = {}  # num_models -> StackedMLP (reused: keeps compiled functions)
        self._mlp_evaluator = None  # evaluation.Evaluator of the one evaluation MLP
        self._eval_datasets = {}  # split -> the source's batches, built once
        self._images = None  # uint8 training images of the one-at-a-time models

    # -- MLPs, stacked ---------------------------------------------------------------------
    def _stack(self, num_models: int) -> stacked_mlp.StackedMLP:
        if num_models not in self._stacks:
            sizes = (
                int(self.images_flat.shape[1]),
                *self.config.mlp_hidden_sizes,
                self.data.num_classes,
            )
            self._stacks[num_models] = stacked_mlp.StackedMLP(
                num_models,
                sizes,
                momentum=self.config.momentum,
                compute_dtype=getattr(tf, self.config.compute_dtype),
                weight_decay=self.config.weight_decay,
            )
        return self._stacks[num_models]

    def train_group(
        self, subset_ratio: float, run_ids: Sequence[int]
    ) -> list[release.Run | RunDiverged]:
        """Trains runs `run_ids` of one ratio together (MLPs) or in turn, and writes them.

        A run whose loss or weights became non-finite is not written: its `RunDiverged`
        (also sent) takes its place in the list.
        """
        if self.config.arch != "mlp":
            return [self._train_single(subset_ratio, run_id) for run_id in run_ids]
        config, n = self.config, self.data.num_train
        rngs = [run_rngs(config.seed, subset_ratio, run_id) for run_id in run_ids]
        subsets = [run_subset(config.seed, subset_ratio, run_id, n) for run_id in run_ids]
        batch = min(config.batch_size, subsets[0].size)
        steps = math.ceil(subsets[0].size / batch)
        rates = learning_rates(config.learning_rate, steps * config.epochs, config.warmup_fraction)
        stack = self._stack(len(run_ids))
        sizes = stack.layer_sizes
        stack.set_params([stacked_mlp.init_params(r["init"], sizes) for r in rngs])
        diverged: dict[int, str] = {}  # model -> why it is not a finished run
        for epoch in range(config.epochs):
            batch_index = np.stack(
                [epoch_batches(s, batch, r["shuffle"]) for s, r in zip(subsets, rngs, strict=True)],
                axis=1,
            )  # [steps, M, B]
            start = time.perf_counter()
            epoch_args = (
                self.images_flat,
                self.labels,
                tf.constant(batch_index),
                tf.constant(rates[epoch * steps : (epoch + 1) * steps]),
            )
            training_pass = None
            if self.record_training_passes:
                loss, correct, logits, seen = stack.train_epoch_recorded(
                    *epoch_args, tf.constant(subsets[0].size, tf.int32)
                )
                training_pass = TrainingPass(logits.numpy(), seen.numpy())
            else:
                loss, correct = stack.train_epoch(*epoch_args)
            loss, correct = loss.numpy(), correct.numpy()
            seconds = time.perf_counter() - start
            for m in range(len(run_ids)):  # the models are independent: the others go on
                problem = divergence.loss_problem(loss[m], epoch + 1)
                if problem is not None:
                    diverged.setdefault(m, problem)
            val_loss, val_correct = stack.evaluate(
                self.val_images, self.val_labels, tf.constant(config.eval_batch_size)
            )
            examples = steps * batch
            val_count = max(1, int(self.val_labels.shape[0]))
            self.notify(
                EpochLog(
                    subset_ratio=subset_ratio,
                    run_ids=tuple(run_ids),
                    epoch=epoch + 1,
                    epochs=config.epochs,
                    loss=loss / examples,
                    acc_train=correct / examples,
                    acc_val=val_correct.numpy() / val_count,
                    val_loss=val_loss.numpy() / val_count,
                    seconds=seconds,
                )
            )
            self.notify(
                EpochEnd(
                    subset_ratio,
                    tuple(run_ids),
                    epoch + 1,
                    config.epochs,
                    lambda with_features, stack=stack: epoch_passes.stack_predict(
                        self.images_flat, stack.infer, with_features
                    ),
                    training_pass=training_pass,
                    snapshot=lambda stack=stack: epoch_passes.stack_snapshot(
                        stack, self.images_flat
                    ),
                )
            )
        written = []
        for m, run_id in enumerate(run_ids):
            params = stack.get_params(m)
            reason = diverged.get(m)
            if reason is None and not divergence.all_finite([*params.weights, *params.biases]):
                reason = f"weights not finite after epoch {config.epochs}"
            model = self._mlp_from(params)
            if reason is not None:
                written.append(self._set_aside(subset_ratio, run_id, model, reason))
                continue
            written.append(
                self._write(
                    subset_ratio,
                    run_id,
                    model,
                    subsets[m],
                    rngs[m]["aux_order"],
                    steps * config.epochs,
                )
            )
        return written

    def _mlp_from(self, params):
        """The evaluation MLP (one, reused: its compiled step is traced once) with `params`."""
        if self._mlp_evaluator is None:
            # The recorded architecture name: the model demo.py will rebuild for this run.
            model = build_model(self.config.model_arch, self.data.num_classes)
            ensure_variables(model, tuple(self.data.train_images.shape[1:]))
            self._mlp_evaluator = evaluation.Evaluator(model)
        model = self._mlp_evaluator.model
        layers = model.linear_layers
        for layer, w, b in zip(layers, params.weights, params.biases, strict=True):
            layer.w.assign(w)
            layer.b.assign(b)
        return model

    # -- other architectures, one model at a time -----------------------------------------
    def _train_single(self, subset_ratio: float, run_id: int) -> release.Run | RunDiverged:
        """Trains one convolutional model (the papers' recipe) and writes it as a run.

        Mid-training checkpoints (`config.checkpoint_every`, `heldout.training.partial`)
        are written after the epoch's `EpochLog` values are computed and before it is
        sent, so a callback that stops the call at epoch k leaves epoch k's checkpoint.
        """
        config, n = self.config, self.data.num_train
        rngs = run_rngs(config.seed, subset_ratio, run_id)
        subset = run_subset(config.seed, subset_ratio, run_id, n)
        batch = min(config.batch_size, subset.size)
        steps = math.ceil(subset.size / batch)
        rates = learning_rates(
            config.learning_rate, steps * config.epochs, config.warmup_fraction, config.lr_schedule
        )
        # Sonnet's initialisers draw from TensorFlow's global generator: seed it per run.
        tf.random.set_seed(int(rngs["init"].integers(2**31 - 1)))
        model = build_model(config.arch, self.data.num_classes)
        ensure_variables(model, tuple(self.data.train_images.shape[1:]))
        optimizer = snt.optimizers.Momentum(
            learning_rate=tf.Variable(0.0), momentum=config.momentum
        )
        # The momentum accumulators, created now (zero updates at rate 0 leave every
        # weight as it is) so that a mid-training checkpoint can be restored into them.
        variables = model.trainable_variables
        optimizer.apply([tf.zeros_like(v) for v in variables], variables)
        epoch_done = tf.Variable(0, dtype=tf.int64)
        step_done = tf.Variable(0, dtype=tf.int64)
        state = tf.train.Checkpoint(
            model=model, momentum=optimizer.accumulated_momentum, epoch=epoch_done, step=step_done
        )
        streams = {"shuffle": rngs["shuffle"], "augment": rngs["augment"]}
        ratio_dir = self.experiment_dir / release.ratio_dir_name(subset_ratio)
        identity = partial.run_identity(config, self.data.record, subset_ratio, run_id)
        first_epoch, reason = 0, None
        if config.checkpoint_every:
            found = partial.find(ratio_dir, run_id, identity, config.epochs)
            if found is not None:
                partial.restore(found, state, streams)
                first_epoch = found.epoch
        images = self._single_images()
        augment = config.augment

        @tf.function
        def step(index, lr, offsets, flips):
            x = tf.gather(images, index)
            if augment:  # on the uint8 pixels: zero padding is black, as in the papers
                x = augment_ops.apply(x, offsets, flips)
            x = tf.cast(x, tf.float32) / 255.0
            y = tf.gather(self.labels, index)
            with tf.GradientTape() as tape, precision.bfloat16_products(config.compute_dtype):
                logits = model(x, is_training=True)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                )
            grads = tape.gradient(loss, model.trainable_variables)
            if config.weight_decay:  # as the stacked MLP: weight matrices and kernels only
                grads = [
                    g + config.weight_decay * v if len(v.shape) > 1 else g
                    for g, v in zip(grads, model.trainable_variables, strict=True)
                ]
            optimizer.learning_rate.assign(lr)
            optimizer.apply(grads, model.trainable_variables)
            hits = tf.reduce_sum(
                tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.int32)
            )
            return loss, hits, logits

        val_x = (
            tf.cast(
                tf.reshape(self.val_images, (-1,) + self.data.train_images.shape[1:]), tf.float32
            )
            / 255.0
        )
        val_count = max(1, int(self.val_labels.shape[0]))
        no_offsets = tf.zeros([batch, 2], tf.int32)
        no_flips = tf.zeros([batch], tf.bool)
        for epoch in range(first_epoch, config.epochs):
            batches = epoch_batches(subset, batch, rngs["shuffle"])
            draws = augment_ops.draw(rngs["augment"], steps, batch) if augment else None
            start = time.perf_counter()
            losses, hits, outputs = [], [], []  # device tensors: read once per epoch
            for s, index in enumerate(batches):
                offsets = tf.constant(draws.offsets[s]) if augment else no_offsets
                flips = tf.constant(draws.flips[s]) if augment else no_flips
                loss, hit, logits = step(
                    tf.constant(index), tf.constant(rates[epoch * steps + s]), offsets, flips
                )
                losses.append(loss)
                hits.append(hit)
                if self.record_training_passes:
                    outputs.append(logits)
            loss_sum = float(np.sum(tf.stack(losses).numpy(), dtype=np.float64)) * batch
            hits_sum = int(np.sum(tf.stack(hits).numpy()))
            seconds = time.perf_counter() - start
            reason = divergence.loss_problem(loss_sum, epoch + 1)
            if reason is not None:  # NaN from here on: no use training further
                break
            val_logits = model(val_x, is_training=False)
            predicted = tf.argmax(val_logits, -1, output_type=tf.int32)
            val_hits = int(tf.reduce_sum(tf.cast(predicted == self.val_labels, tf.int32)))
            val_loss = float(
                tf.reduce_sum(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(
                        labels=self.val_labels, logits=val_logits
                    )
                )
            )
            every = config.checkpoint_every
            if every and (epoch + 1) % every == 0 and epoch + 1 < config.epochs:
                epoch_done.assign(epoch + 1)
                step_done.assign((epoch + 1) * steps)
                with naming_write_errors(ratio_dir / f".{run_id}.partial-e{epoch + 1}"):
                    partial.save(ratio_dir, run_id, epoch + 1, state, identity, streams)
            examples = steps * batch
            self.notify(
                EpochLog(
                    subset_ratio=subset_ratio,
                    run_ids=(run_id,),
                    epoch=epoch + 1,
                    epochs=config.epochs,
                    loss=np.array([loss_sum / examples]),
                    acc_train=np.array([hits_sum / examples]),
                    acc_val=np.array([val_hits / val_count]),
                    val_loss=np.array([val_loss / val_count]),
                    seconds=seconds,
                )
            )
            if self.record_training_passes:  # augmented images where the recipe augments
                passes = epoch_passes.training_pass(batches, tf.stack(outputs), subset.size, n)
                predict = epoch_passes.single_predict(model, images)
                self.notify(
                    EpochEnd(subset_ratio, (run_id,), epoch + 1, config.epochs, predict, passes)
                )
        if reason is None and not divergence.all_finite(v.numpy() for v in model.variables):
            reason = f"weights not finite after epoch {config.epochs}"
        if reason is not None:
            run = self._set_aside(subset_ratio, run_id, model, reason)
        else:
            run = self._write(
                subset_ratio, run_id, model, subset, rngs["aux_order"], steps * config.epochs
            )
        partial.remove(ratio_dir, run_id)  # written or set aside: nothing to resume
        return run

    def _single_images(self):
        """uint8 [N, H, W, C] training images on the device, placed once for all runs."""
        if self._images is None:
            self._images = tf.constant(self.data.train_images)
        return self._images

    # -- evaluation and writing ------------------------------------------------------------
    def _set_aside(self, subset_ratio, run_id, model, reason: str) -> RunDiverged:
        """Keeps a diverged model aside (never as a finished run); sends `RunDiverged`."""
        ratio_dir = self.experiment_dir / release.ratio_dir_name(subset_ratio)
        with naming_write_errors(ratio_dir / f".{run_id}.diverged"):
            event = divergence.keep_diverged(
                ratio_dir,
                subset_ratio,
                run_id,
                reason,
                lambda folder: checkpoints.save(model, folder, self.config.epochs, 0),
            )
        self.notify(event)
        return event

    def _write(self, subset_ratio, run_id, model, subset, aux_rng, global_step) -> release.Run:
        if self._mlp_evaluator is not None and model is self._mlp_evaluator.model:
            evaluator = self._mlp_evaluator
        else:
            evaluator = evaluation.Evaluator(model)
        # One pass per split gives correctness and the logits the outputs are taken from.
        correct_train, logits_train, labels_train = self._evaluated(evaluator, "train")
        correct_test, logits_test, labels_test = self._evaluated(evaluator, "test")
        mask = np.zeros(self.data.num_train, dtype=bool)
        mask[subset] = True
        aux = aux_from_predictions(mask, correct_train, correct_test, rng=aux_rng)
        probs = None
        if self.config.record_heldout_probs:  # beside the aux arrays, which stay as they are
            probs = soft_cscore.heldout_softmax(
                lambda images: model(tf.cast(images, tf.float32) / 255.0, is_training=False),
                self.data.train_images,
                np.flatnonzero(~mask),
                self.data.num_classes,
            )

        def write_files(folder):  # `folder`: the run's temporary checkpoints/ folder
            checkpoints.save(model, folder, epoch=self.config.epochs, global_step=global_step)
            if probs is not None:
                soft_cscore.write_heldout_probs(folder.parent, np.flatnonzero(~mask), probs)
            # Margins against the labels the run trained on (corrupted where recorded).
            labels_kind = "dataset" if self.data.corruption is None else "after_corruption"
            outputs.save_run_outputs(
                folder.parent,
                subset_ratio,
                run_id,
                aux,
                {"train": logits_train, "test": logits_test},
                {"train": labels_train, "test": labels_test},
                labels_source=labels_kind,
            )
            write_run_record(folder.parent)  # last: the sizes a resume checks

        run_dir = self.experiment_dir / release.ratio_dir_name(subset_ratio) / str(run_id)
        with naming_write_errors(run_dir):
            run = release.write_run(
                self.experiment_dir, subset_ratio, run_id, aux, write_checkpoint=write_files
            )
        self.notify(
            RunWritten(
                run,
                float(correct_train[mask].mean()),
                float(correct_train[~mask].mean()) if (~mask).any() else math.nan,
                float(correct_test.mean()),
            )
        )
        return run

    def _evaluated(self, evaluator, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(correctness, logits, labels) in index order, through `heldout.evaluation.evaluate`."""
        if split not in self._eval_datasets:
            # Built once and re-iterated for every run: the same batches demo.py evaluates.
            self._eval_datasets[split] = self.data.source.as_dataset(
                split, self.config.eval_batch_size
            )
        return evaluate_in_index_order(
            evaluator, self._eval_datasets[split], split, self.data.source.split_size(split)
        )


@contextlib.contextmanager
def naming_write_errors(target: Path) -> Iterator[None]:
    """Turns a failed write (full disk, file-size limit) into one line naming `target`.

    TensorFlow's checkpoint writer raises its own errors (`ResourceExhaustedError` for a
    full disk); numpy raises OSErrors that name no file. The writers remove their
    temporaries themselves.
    """
    try:
        yield
    except FileExistsError:
        raise  # the run was written by another process: said as it is
    except (tf.errors.OpError, OSError) as error:
        raise TrainingError(
            f"{target}: could not be written ({_write_cause(error)}); is the disk full, or over a "
            "file-size limit?"
        ) from None


def _write_cause(error: BaseException) -> str:
    """The cause of a failed write in a few words ("File too large", "No space left ...")."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(getattr(error, "message", None) or error)
    text = re.sub(r"\{\{.*?\}\}|\[Op:[^\]]*\]", "", text).strip()  # TensorFlow's decorations
    text = text.rsplit("; ", 1)[-1].strip()  # after the temporary file's name
    return text.splitlines()[0] if text else type(error).__name__


def evaluate_in_index_order(
    evaluator, dataset, split: str, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bool correctness [size], float32 logits [size, classes], int64 labels [size]) in index
    order, from one pass of the evaluator's model over `dataset`.

    `evaluator`: a `heldout.evaluation.evaluate.Evaluator`, the code path `demo.py` re-evaluates
    runs with, so that the stored correctness and a later cross-check cannot disagree.
    `dataset`: the batches of a source's `as_dataset(split, batch_size)`.
    """
    result = evaluator.evaluate(dataset, split, keep_predictions=False, keep_logits=True)
    if result.index.size != size or np.unique(result.index).size != size:
        raise TrainingError(
            f"evaluating the {split} split gave {result.index.size} results for {size} examples"
        )
    correct = np.zeros(size, dtype=bool)
    correct[result.index] = result.correctness
    logits = np.empty((size, result.logits.shape[1]), dtype=np.float32)
    logits[result.index] = result.logits
    labels = np.empty(size, dtype=np.int64)
    labels[result.index] = result.labels
    return correct, logits, labels
