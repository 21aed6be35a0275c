"""The papers' recipe: augmentation (deterministic per seed, never at evaluation), schedules,
the CIFAR defaults."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tensorflow as tf
from training_slice import tiny_conv_config, tiny_npz

from heldout import datasets, training
from heldout.evaluation import evaluate as evaluation
from heldout.release import layout as release
from heldout.training import augment, plan


def test_tensorflow_augmentation_equals_the_numpy_reference():
    rng = np.random.default_rng(1)
    images = rng.integers(1, 256, (6, 5, 7, 3), dtype=np.uint8)  # no zero pixel of its own
    draws = augment.draw(np.random.default_rng(2), steps=1, batch=6)
    assert draws.offsets.min() >= 0 and draws.offsets.max() <= 8
    got = augment.apply(tf.constant(images), tf.constant(draws.offsets[0]), draws.flips[0])
    want = augment.apply_numpy(images, draws.offsets[0], draws.flips[0])
    np.testing.assert_array_equal(got.numpy(), want)
    # Offset (4, 4) without a flip is the image itself; (0, 0) shifts in 4 zero rows.
    same = augment.apply_numpy(images, np.full((6, 2), 4), np.zeros(6, bool))
    np.testing.assert_array_equal(same, images)
    shifted = augment.apply_numpy(images, np.zeros((6, 2), int), np.zeros(6, bool))
    assert not shifted[:, :4].any() and not shifted[:, :, :4].any()
    flipped = augment.apply_numpy(images, np.full((6, 2), 4), np.ones(6, bool))
    np.testing.assert_array_equal(flipped, images[:, :, ::-1])


def test_augmentation_draws_are_the_runs_own_stream():
    a = plan.run_rngs(0, 0.5, 3)
    b = plan.run_rngs(0, 0.5, 3)
    draws_a, draws_b = augment.draw(a["augment"], 4, 8), augment.draw(b["augment"], 4, 8)
    np.testing.assert_array_equal(draws_a.offsets, draws_b.offsets)
    other = augment.draw(plan.run_rngs(1, 0.5, 3)["augment"], 4, 8)
    assert not np.array_equal(other.offsets, draws_a.offsets)
    # Appending the stream left the earlier ones as they were (runs stay reproducible).
    old = np.random.SeedSequence([0, 500_000, 3]).spawn(4)
    np.testing.assert_array_equal(
        np.random.default_rng(old[2]).permutation(50),
        plan.run_rngs(0, 0.5, 3)["shuffle"].permutation(50),
    )


def test_schedules():
    linear = plan.learning_rates(0.4, 100, 0.15)
    np.testing.assert_array_equal(linear, plan.learning_rates(0.4, 100, 0.15, "linear"))
    step = plan.learning_rates(0.7, 100, 0.15, "step")
    assert step[14] == pytest.approx(0.7) and np.all(np.diff(step[:15]) > 0)
    np.testing.assert_allclose(step[15:30], 0.7)
    np.testing.assert_allclose(step[30:60], 0.07, rtol=1e-6)
    np.testing.assert_allclose(step[60:90], 0.007, rtol=1e-6)
    np.testing.assert_allclose(step[90:], 0.0007, rtol=1e-6)
    with pytest.raises(training.TrainingError, match="lr_schedule"):
        training.TrainingConfig(lr_schedule="cosine")


def test_cifar_recipe_is_the_default_for_cifar_and_flags_win():
    config = training.TrainingConfig.for_dataset("cifar10")
    assert (config.arch, config.epochs, config.batch_size, config.learning_rate) == (
        "small_inception",
        80,
        512,
        0.4,
    )
    assert config.augment and config.lr_schedule == "linear" and config.momentum == 0.9
    assert training.TrainingConfig.for_dataset("cifar100:3.0.2").epochs == 160
    assert training.TrainingConfig.for_dataset("cifar10", epochs=2, augment=False).epochs == 2
    mnist = training.TrainingConfig.for_dataset("mnist")
    assert (mnist.arch, mnist.epochs, mnist.augment) == ("mlp", 20, False)
    with pytest.raises(training.TrainingError, match="not to the MLP"):
        training.TrainingConfig(augment=True)


_conv_config = functools.partial(tiny_conv_config, seed=1, augment=True)


def _model_values(run) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(run.checkpoint_dir / "ckpt-1"))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.startswith("model/")
    }


def test_augmented_training_is_deterministic_per_seed_and_off_at_evaluation(tmp_path):
    path = tiny_npz(tmp_path / "tiny.npz")
    runs = {
        name: training.train_experiment(_conv_config(path, **changes), tmp_path / name).written[0]
        for name, changes in (
            ("a", {}),
            ("b", {}),
            ("plain", {"augment": False}),
        )
    }
    a, b, plain = (_model_values(runs[k]) for k in ("a", "b", "plain"))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert any(not np.array_equal(a[name], plain[name]) for name in a), "augment did nothing"
    meta = release.read_experiment_meta(tmp_path / "a")
    assert meta.extra["training"]["augment"] is True
    # The stored correctness is that of the plain (unaugmented) images: demo.py's check.
    source = datasets.source_for_meta(meta)
    check = evaluation.check_run(runs["a"], source, meta=meta)
    assert check.all_match and check.matches == 64 + 16
