"""The training-pass statistics: the logits each training step computed, by example index.

A hand-made loop runs the same steps one at a time and takes each batch's forward pass
before the step; the recorded tables must equal those outputs scattered by index, with
every example of a model's subset once (the last batch's fill-up repeats not twice) and
the rest NaN, and recording must not change the training.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from heldout.training import plan, stacked_mlp

N, SIZES, M, BATCH, SUBSET = 23, (6, 5, 3), 2, 5, 17  # 17 = 3 x 5 + 2: a partial last batch


def _setup():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (N, SIZES[0]), dtype=np.uint8)
    labels = rng.integers(0, SIZES[-1], N).astype(np.int32)
    params = [stacked_mlp.init_params(rng, SIZES) for _ in range(M)]
    subsets = [np.sort(rng.permutation(N)[:SUBSET]) for _ in range(M)]
    return images, labels, params, subsets


def _epoch_index(subsets, seed: int) -> np.ndarray:
    rngs = [np.random.default_rng([seed, m]) for m in range(M)]
    return np.stack(
        [plan.epoch_batches(s, BATCH, r) for s, r in zip(subsets, rngs, strict=True)], axis=1
    )  # [S, M, B]


def test_training_pass_tables_are_the_steps_forward_outputs_scattered_by_index():
    images, labels, params, subsets = _setup()
    recorded = stacked_mlp.StackedMLP(M, SIZES)
    recorded.set_params(params)
    by_hand = stacked_mlp.StackedMLP(M, SIZES)
    by_hand.set_params(params)
    forward = tf.function(lambda index: by_hand._forward(by_hand._images(images, index))[1])
    for epoch in range(2):
        batch_index = _epoch_index(subsets, epoch)
        steps = batch_index.shape[0]
        assert steps * BATCH > SUBSET  # the last batch is filled up with repeats
        rates = np.linspace(0.5, 0.3, steps).astype(np.float32)
        step_logits = []
        for s in range(steps):  # the hand-made loop: forward, then the step
            step_logits.append(forward(tf.constant(batch_index[s])).numpy())
            by_hand.train_epoch(images, labels, batch_index[s : s + 1], rates[s : s + 1])
        _, _, table, seen = recorded.train_epoch_recorded(
            images, labels, batch_index, rates, tf.constant(SUBSET)
        )
        table, seen = table.numpy(), seen.numpy()
        for m in range(M):
            order = batch_index[:, m].reshape(-1)  # the model's epoch order, with repeats
            outputs = np.concatenate([out[m] for out in step_logits])  # [S * B, C]
            assert np.array_equal(np.sort(order[:SUBSET]), subsets[m])  # each once
            expected = np.full((N, SIZES[-1]), np.nan, np.float32)
            expected[order[:SUBSET]] = outputs[:SUBSET]  # the first time each is seen
            np.testing.assert_array_equal(table[m], expected)
            mask = np.zeros(N, dtype=bool)
            mask[subsets[m]] = True
            np.testing.assert_array_equal(seen[m], mask)
            # The repeats' second forward pass (weights moved since) is not what was kept.
            repeats = outputs[SUBSET:]
            assert not np.array_equal(table[m, order[SUBSET:]], repeats)
        for a, b in zip(recorded.w + recorded.b, by_hand.w + by_hand.b, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())  # training is unchanged


def test_recording_leaves_the_training_bit_identical():
    images, labels, params, subsets = _setup()
    batch_index = _epoch_index(subsets, 7)
    rates = np.full(batch_index.shape[0], 0.2, np.float32)
    plain = stacked_mlp.StackedMLP(M, SIZES)
    plain.set_params(params)
    loss, correct = plain.train_epoch(images, labels, batch_index, rates)
    recorded = stacked_mlp.StackedMLP(M, SIZES)
    recorded.set_params(params)
    loss_r, correct_r, _, _ = recorded.train_epoch_recorded(
        images, labels, batch_index, rates, tf.constant(SUBSET)
    )
    np.testing.assert_array_equal(loss.numpy(), loss_r.numpy())
    np.testing.assert_array_equal(correct.numpy(), correct_r.numpy())
    for a, b in zip(plain.w + plain.b, recorded.w + recorded.b, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_snapshot_predicts_from_the_weights_it_copied_while_training_moves_on():
    images, labels, params, subsets = _setup()
    stack = stacked_mlp.StackedMLP(M, SIZES)
    stack.set_params(params)
    before = stack.infer(images)
    weights = [tf.constant(w.numpy()) for w in stack.w]
    biases = [tf.constant(b.numpy()) for b in stack.b]
    batch_index = _epoch_index(subsets, 1)
    stack.train_epoch(images, labels, batch_index, np.full(len(batch_index), 0.5, np.float32))
    after = stack.infer(images)[1].numpy()
    hidden, logits = stack.infer_snapshot(weights, biases, images)
    np.testing.assert_array_equal(logits.numpy(), before[1].numpy())
    np.testing.assert_array_equal(hidden.numpy(), before[0].numpy())
    assert not np.array_equal(logits.numpy(), after)


def _single_model_passes(tmp_path, batch_size: int, augment: bool):
    """SmallInception trained one model at a time, recording its training passes."""
    from training_slice import tiny_conv_config, tiny_npz

    from heldout.training.data import load_training_data
    from heldout.training.events import EpochEnd, EpochLog
    from heldout.training.loops import Trainer

    config = tiny_conv_config(
        tiny_npz(tmp_path / "tiny.npz"), epochs=2, batch_size=batch_size, augment=augment
    )
    data = load_training_data(config)
    events = []
    folder = tmp_path / "exp"
    folder.mkdir()
    Trainer(config, data, folder, events.append, record_training_passes=True).train_group(0.5, [0])
    logs = [e for e in events if isinstance(e, EpochLog)]
    ends = [e for e in events if isinstance(e, EpochEnd)]
    subset = plan.run_subset(config.seed, 0.5, 0, data.num_train)
    return data, subset, logs, ends


def test_a_single_model_records_what_its_steps_trained_on_augmented(tmp_path):
    """No fill-up (32 examples, batches of 16): the recorded logits give the epoch's loss."""
    from heldout.proxies.confidence import softmax_statistics

    data, subset, logs, ends = _single_model_passes(tmp_path, 16, augment=True)
    assert [e.epoch for e in ends] == [1, 2]
    mask = np.zeros(data.num_train, dtype=bool)
    mask[subset] = True
    for log, end in zip(logs, ends, strict=True):
        np.testing.assert_array_equal(end.training_pass.seen[0], mask)
        assert np.isnan(end.training_pass.logits[0, ~mask]).all()
        stats = softmax_statistics(end.training_pass.logits[0, mask], data.train_labels[mask])
        assert stats["loss"].mean() == pytest.approx(float(log.loss[0]), rel=1e-5)
        assert stats["correct"].mean() == pytest.approx(float(log.acc_train[0]))


def test_a_single_models_last_batch_fill_up_is_not_counted_twice(tmp_path):
    data, subset, _, ends = _single_model_passes(tmp_path, 12, augment=False)  # 3 x 12 > 32
    for end in ends:
        assert end.training_pass.seen[0].sum() == subset.size == 32
        assert np.isfinite(end.training_pass.logits[0, subset]).all()


def test_the_single_model_table_keeps_each_examples_first_step():
    from heldout.training.epoch_passes import training_pass

    batches = np.array([[3, 1], [0, 3]])  # 3 examples; the last position repeats example 3
    step_logits = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    table = training_pass(batches, step_logits, 3, 5)
    np.testing.assert_array_equal(table.seen[0], [True, True, False, True, False])
    np.testing.assert_array_equal(table.logits[0, 3], [0, 1])  # step 0, not the repeat
    np.testing.assert_array_equal(table.logits[0, 0], [4, 5])
    assert np.isnan(table.logits[0, [2, 4]]).all()
