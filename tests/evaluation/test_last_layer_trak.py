"""Last-layer TRAK features of real restored models: the gradient against tf.GradientTape,
the split at the final layer against the models' own logits, and restored runs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from evaluation.test_fanout import NUM_TEST, NUM_TRAIN, _write_experiment

from heldout import models
from heldout.datasets.relabeled import experiment_source
from heldout.evaluation.last_layer_trak import (
    compute_last_layer_trak,
    last_layer_features,
    margin_and_gradient,
)
from heldout.models.checkpoints import RestoreTarget
from heldout.models.final_layer import final_linear, penultimate
from heldout.release import layout as release
from heldout.release.outputs import margins_from_logits
from heldout.scores.attribution.trak import compute_trak_model, gradient_features


def _mlp(seed=0):
    tf.random.set_seed(seed)
    model = models.build_model("mlp", 10)
    models.ensure_variables(model)
    return model


def _batches(images, labels, batch=4):
    index = np.arange(len(labels))
    return tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": labels, "index": index}
    ).batch(batch)


def test_features_are_the_gradient_of_the_margin_by_gradient_tape():
    model = _mlp()
    rng = np.random.default_rng(0)
    images = rng.random((7, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, 7)
    features = last_layer_features(model, _batches(images, labels), 7)
    g = gradient_features(features)
    linear = final_linear(model)
    for i in range(7):
        with tf.GradientTape() as tape:
            z = model(images[i : i + 1], is_training=False)[0]
            others = tf.concat([z[: labels[i]], z[labels[i] + 1 :]], axis=0)
            phi = z[labels[i]] - tf.reduce_logsumexp(others)
        dw, db = tape.gradient(phi, [linear.w, linear.b])
        expected = np.concatenate([dw.numpy().ravel(), db.numpy()])
        np.testing.assert_allclose(g[i], expected, rtol=1e-4, atol=1e-6)
        assert features.margin[i] == pytest.approx(float(phi), abs=1e-4)


def test_margin_matches_the_stored_definition_with_large_logits():
    logits = np.array([[300.0, 299.0, -50.0], [1.0, 1.0, 1.0], [0.0, 80.0, 80.0]], np.float32)
    labels = np.array([0, 2, 1])
    phi, gradient = margin_and_gradient(tf.constant(logits), tf.constant(labels))
    expected, _ = margins_from_logits(logits, labels)
    np.testing.assert_allclose(phi.numpy(), expected, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(gradient.numpy().sum(axis=1), 0.0, atol=1e-6)
    assert np.all(np.isfinite(gradient.numpy()))


@pytest.mark.parametrize(
    "arch, shape", [("mlp", (28, 28, 1)), ("small_inception", (8, 8, 3)), ("resnet50", (32, 32, 3))]
)
def test_penultimate_then_final_linear_is_the_model(arch, shape):
    tf.random.set_seed(1)
    model = models.build_model(arch, 10)
    models.ensure_variables(model)
    images = tf.random.uniform((3, *shape))
    np.testing.assert_allclose(
        final_linear(model)(penultimate(model, images)).numpy(),
        model(images, is_training=False).numpy(),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    return _write_experiment(tmp_path_factory.mktemp("trak"), "tiny-mlp", seed=2)


def test_restored_runs_average_their_own_trak(tiny_experiment):
    experiment = release.open_experiment(tiny_experiment)
    runs = experiment.runs_at(0.5)
    source = experiment_source(tiny_experiment)
    positions = np.array([1, 5, 7])
    trak = compute_last_layer_trak(
        runs[:2], source, experiment.meta, NUM_TRAIN, NUM_TEST, positions, batch_size=16
    )
    assert trak.run_ids == (0, 1) and trak.shape == (3, NUM_TRAIN)
    # each model is the TRAK of that run's restored weights (not the last one restored)
    singles = []
    for run in runs[:2]:
        model = models.build_model("mlp", 10)
        models.ensure_variables(model)
        RestoreTarget(model).restore(run.path)
        train = last_layer_features(model, source.as_dataset("train", 16), NUM_TRAIN)
        test = last_layer_features(model, source.as_dataset("test", 16), NUM_TEST)
        test = type(test)(
            test.penultimate[positions], test.output_gradient[positions], test.margin[positions]
        )
        singles.append(compute_trak_model(train, test).test_side)
    for model, expected in zip(trak.models, singles, strict=True):
        np.testing.assert_allclose(model.test_side, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(singles[0], singles[1])


def test_a_restored_small_inception_run_gives_its_trak(tmp_path):
    import tiny_release

    rng = np.random.default_rng(3)
    data_path, _ = tiny_release.random_npz_data(tmp_path, (32, 32, 3), 24, 6, rng)
    folder = tmp_path / "tiny-inception"
    tiny_release.write_npz_meta(folder, "small_inception", (32, 32, 3), data_path)
    tf.random.set_seed(5)
    model = models.build_model("small_inception", 10)
    models.ensure_variables(model)
    for variable in model.variables:  # as after training: not the 0 they start at
        if "moving_variance" in variable.name and "average" in variable.name:
            variable.assign(tf.ones_like(variable))
    mask = np.zeros(24, bool)
    mask[:12] = True
    tiny_release.export_run(
        folder, 0.5, 0, model, data_path, mask, epoch=1, global_step=1, rng=rng, batch_size=8
    )
    experiment = release.open_experiment(folder)
    source = experiment_source(folder)
    trak = compute_last_layer_trak(
        experiment.runs_at(0.5), source, experiment.meta, 24, 6, batch_size=8
    )
    assert trak.shape == (6, 24) and trak.models[0].test_side.shape == (6, (336 + 1) * 10)
    features = last_layer_features(model, source.as_dataset("train", 8), 24)
    np.testing.assert_allclose(
        trak.models[0].train.penultimate, features.penultimate, rtol=1e-4, atol=1e-5
    )
    assert np.all(np.isfinite(trak.dense()))
