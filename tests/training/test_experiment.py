"""Heldout training on small slices: layout, resume, determinism, label noise, cross-check."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tensorflow as tf
from tool_runs import assert_demo_matches_all, run_script
from training_slice import small_config, write_fashion_slice, write_idx

from heldout import datasets, training
from heldout.datasets import idx, relabeled
from heldout.release import label_corruption
from heldout.release import layout as release
from heldout.training import plan, stacked_mlp

NUM_TRAIN, NUM_TEST = 2000, 500


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    """A small slice of Debian's Fashion-MNIST as IDX files (skips when it is missing)."""
    return write_fashion_slice(tmp_path_factory.mktemp("fashion_slice"), NUM_TRAIN, NUM_TEST)


# Two ratios of two runs, two epochs, on the 2000-example slice.
_config = functools.partial(
    small_config,
    subset_ratios=(0.25, 0.5),
    epochs=2,
    batch_size=128,
    models_per_step=2,
    val_examples=200,
    seed=3,
)


@pytest.fixture(scope="module")
def noisy_experiment(tmp_path_factory, data_dir):
    """One trained experiment (10% corrupted labels) shared by the read-only tests."""
    out = tmp_path_factory.mktemp("exp") / "fashion-slice-mlp"
    events = []
    result = training.train_experiment(
        _config(data_dir, label_corrupt_prob=0.1), out, on_event=events.append
    )
    return out, result, events


# ----------------------------------------------------------------------- pure functions


def test_learning_rate_schedule():
    rates = plan.learning_rates(0.1, 100, 0.15)
    assert rates.shape == (100,)
    assert np.argmax(rates) == 14 and rates[14] == pytest.approx(0.1)
    assert np.all(np.diff(rates[:15]) > 0) and np.all(np.diff(rates[15:]) < 0)
    assert 0 < rates[-1] < 0.01


def test_epoch_batches_cover_the_subset():
    subset = np.arange(10, 1010, 3)
    batches = plan.epoch_batches(subset, 64, np.random.default_rng(0))
    assert batches.shape == (6, 64)
    assert set(batches.ravel()) == set(subset)
    assert np.array_equal(np.sort(batches.ravel()[: subset.size]), subset)


def test_subsets_depend_only_on_seed_ratio_and_run():
    a = plan.run_subset(1, 0.5, 3, 1000)
    assert a.size == 500 and np.array_equal(a, plan.run_subset(1, 0.5, 3, 1000))
    assert not np.array_equal(a, plan.run_subset(1, 0.5, 4, 1000))
    assert not np.array_equal(a, plan.run_subset(2, 0.5, 3, 1000))


def test_init_matches_sonnet_linear_statistics():
    params = stacked_mlp.init_params(np.random.default_rng(0))
    w = params.weights[0]
    assert w.shape == (784, 512) and w.dtype == np.float32
    assert np.abs(w).max() <= 2 / np.sqrt(784) + 1e-7
    # std of a normal truncated at 2 sigma: 0.8796 sigma.
    assert w.std() == pytest.approx(0.8796 / np.sqrt(784), rel=0.02)
    assert all(not b.any() for b in params.biases)


@pytest.mark.parametrize(
    "hidden_sizes, weight_decay",
    [((512, 256), 0.0), ((64,), 0.01), ((32, 16, 8), 0.001)],
    ids=["published-mlp", "one-hidden-layer-weight-decay", "three-hidden-layers"],
)
def test_stacked_step_equals_sonnet_mlp_with_momentum(hidden_sizes, weight_decay):
    """Stacked training = MLP + snt.optimizers.Momentum trained one model at a time.

    With weight decay, the reference adds `weight_decay / 2 * ||W||^2` of every weight
    matrix (not the biases) to its loss and lets the tape differentiate it.
    """
    import sonnet as snt

    from heldout.models import build_model, ensure_variables

    rng = np.random.default_rng(1)
    m, b, n, steps = 3, 16, 100, 3
    sizes = (784, *hidden_sizes, 10)
    images = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int32)
    params = [stacked_mlp.init_params(rng, sizes) for _ in range(m)]
    index = rng.integers(0, n, (steps, m, b)).astype(np.int32)
    rates = np.array([0.1, 0.05, 0.02], np.float32)
    stack = stacked_mlp.StackedMLP(m, sizes, weight_decay=weight_decay)
    stack.set_params(params)
    loss, _ = stack.train_epoch(
        tf.constant(images), tf.constant(labels), tf.constant(index), tf.constant(rates)
    )
    arch = training.TrainingConfig(mlp_hidden_sizes=hidden_sizes).model_arch
    for k in range(m):
        model = build_model(arch, 10)
        ensure_variables(model)
        layers = model.linear_layers
        assert tuple(layer.output_size for layer in layers) == sizes[1:]
        for layer, w, bias in zip(layers, params[k].weights, params[k].biases, strict=True):
            layer.w.assign(w)
            layer.b.assign(bias)
        optimizer = snt.optimizers.Momentum(learning_rate=0.1, momentum=0.9)
        total = 0.0
        for s in range(steps):
            x = tf.constant(images[index[s, k]].reshape(b, 28, 28, 1) / np.float32(255))
            with tf.GradientTape() as tape:
                step_loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(
                        labels=labels[index[s, k]], logits=model(x)
                    )
                )
                penalty = weight_decay / 2 * sum(tf.reduce_sum(lay.w**2) for lay in layers)
                objective = step_loss + penalty
            grads = tape.gradient(objective, model.trainable_variables)
            optimizer.learning_rate = float(rates[s])
            optimizer.apply(grads, model.trainable_variables)
            total += float(step_loss) * b
        assert loss.numpy()[k] == pytest.approx(total, rel=1e-5)
        got = stack.get_params(k)
        for layer, w, bias in zip(layers, got.weights, got.biases, strict=True):
            np.testing.assert_allclose(w, layer.w.numpy(), atol=1e-6)
            np.testing.assert_allclose(bias, layer.b.numpy(), atol=1e-6)


def test_corrupt_labels_and_checks(tmp_path):
    labels = np.arange(1000) % 10
    corruption = label_corruption.corrupt_labels(labels, 0.1, 10, np.random.default_rng(0))
    assert corruption.num_corrupted == 100
    assert np.all(corruption.new_labels != labels[corruption.indices])
    path = tmp_path / label_corruption.LABEL_CORRUPTION_FILE
    label_corruption.save_label_corruption(path, corruption)
    loaded = label_corruption.load_label_corruption(path)
    np.testing.assert_array_equal(loaded.apply(labels)[corruption.indices], corruption.new_labels)
    with pytest.raises(label_corruption.LabelCorruptionError, match="different dataset"):
        loaded.apply((labels + 1) % 10)


# ------------------------------------------------------------------------- experiments


def test_layout_is_a_valid_experiment(noisy_experiment):
    out, result, events = noisy_experiment
    assert len(result.written) == 4 and not result.skipped
    experiment = release.open_experiment(out)
    assert experiment.subset_ratios == (0.25, 0.5)
    assert [r.run_id for r in experiment.runs_at(0.5)] == [0, 1]
    meta = experiment.meta
    assert (meta.arch, meta.num_classes, meta.dataset, meta.index_order) == (
        "mlp",
        10,
        "fashion_mnist_idx",
        "idx",
    )
    assert meta.image_shape == (28, 28, 1)
    assert meta.extra["training"]["epochs"] == 2
    for run in experiment.runs:
        aux = run.load_aux()
        assert (aux.num_train, aux.num_test) == (NUM_TRAIN, NUM_TEST)
        assert aux.index_train.size == plan.subset_size(run.subset_ratio, NUM_TRAIN)
        np.testing.assert_array_equal(
            np.sort(aux.index_train),
            plan.run_subset(3, run.subset_ratio, run.run_id, NUM_TRAIN),
        )
        # shuffled evaluation orders, as in the release
        assert not np.array_equal(aux.index_test, np.arange(NUM_TEST))
        assert run.has_checkpoint
        assert [p.name for p in run.checkpoint_dir.glob("*.index")] == ["ckpt-2.index"]
    logs = [e for e in events if isinstance(e, training.EpochLog)]
    assert len(logs) == 2 * 2  # two groups (ratios) x two epochs
    assert all(log.acc_train.shape == (2,) and log.acc_val.shape == (2,) for log in logs)
    assert logs[-1].acc_val.mean() > 0.4  # it learns


def test_scores_can_be_computed(noisy_experiment):
    from heldout.scores import experiment as scores
    from heldout.scores.request import ScoreRequest

    out, _, _ = noisy_experiment
    result = scores.score_experiment(
        release.open_experiment(out), ScoreRequest(scores=("cscore", "memorization", "influence"))
    )
    arrays = result.arrays()
    assert arrays["cscore"].shape == (NUM_TRAIN,)
    assert np.isfinite(arrays["cscore"]).mean() > 0.5
    assert arrays["influence"].shape == (NUM_TEST, NUM_TRAIN)


def test_label_corruption_is_recorded(noisy_experiment, data_dir):
    out, _, _ = noisy_experiment
    experiment = release.open_experiment(out)
    assert (
        experiment.meta.extra[label_corruption.META_KEY] == label_corruption.LABEL_CORRUPTION_FILE
    )
    corruption = label_corruption.experiment_label_corruption(experiment)
    assert corruption.num_corrupted == NUM_TRAIN // 10
    clean = idx.load_idx_split(data_dir, "train").labels
    np.testing.assert_array_equal(clean[corruption.indices], corruption.original_labels)
    assert np.all(corruption.new_labels != corruption.original_labels)
    assert corruption.new_labels.min() >= 0 and corruption.new_labels.max() < 10
    labels = relabeled.experiment_labels(experiment, clean)
    assert (labels != clean).sum() == corruption.num_corrupted


def test_checkpoints_cross_check_n_out_of_n(noisy_experiment, data_dir):
    """What demo.py does: restore the run's checkpoint, evaluate, compare with aux arrays."""
    from heldout.datasets import get_source
    from heldout.evaluation import evaluate as evaluation

    out, _, _ = noisy_experiment
    experiment = release.open_experiment(out)
    run = experiment.run(0.5, 1)
    clean_source = datasets.source_for_meta(experiment.meta)
    assert clean_source.split_size("train") == NUM_TRAIN
    # The form demo.py can use with --model_dir: the experiment folder of the run.
    source = relabeled.relabeled_source(
        run.experiment_dir, get_source("fashion_mnist_idx", data_dir)
    )
    check = evaluation.check_run(run, source, meta=experiment.meta)
    assert check.restore.epoch == 2
    assert check.all_match and check.matches == NUM_TRAIN + NUM_TEST
    # Against the clean labels, only corrupted examples can disagree.
    clean = evaluation.check_run(run, clean_source, meta=experiment.meta)
    corrupted = label_corruption.experiment_label_corruption(experiment).mask(NUM_TRAIN)
    for name in ("train", "removed"):
        assert corrupted[clean.checks[name].mismatched_indices].all()


def test_resume_trains_nothing_and_removes_temporaries(noisy_experiment, data_dir):
    out, _, _ = noisy_experiment
    before = {p: p.stat().st_mtime_ns for p in out.rglob("aux_arrays.npz")}
    stale = out / "0.5" / ".1.abc123.tmp"
    stale.mkdir()
    (stale / "aux_arrays.npz").write_bytes(b"half")
    result = training.train_experiment(_config(data_dir, label_corrupt_prob=0.1), out)
    assert not result.written and len(result.skipped) == 4
    assert not stale.exists()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("aux_arrays.npz")} == before


def test_resume_with_other_settings_is_refused(noisy_experiment, data_dir):
    out, _, _ = noisy_experiment
    with pytest.raises(training.TrainingError, match="epochs"):
        training.train_experiment(_config(data_dir, label_corrupt_prob=0.1, epochs=3), out)


def test_a_label_corruption_left_by_other_settings_is_refused(tmp_path, data_dir):
    # An interrupted call can leave the corruption record before the experiment's meta.
    out = tmp_path / "exp"
    out.mkdir()
    labels = idx.load_idx_split(data_dir, "train").labels
    other = label_corruption.corrupt_labels(labels, 0.2, 10, plan.corruption_rng(3))
    label_corruption.save_label_corruption(out / label_corruption.LABEL_CORRUPTION_FILE, other)
    with pytest.raises(training.TrainingError, match="label_corruption.*another experiment"):
        training.train_experiment(_config(data_dir, label_corrupt_prob=0.1), out)
    assert not (out / release.EXPERIMENT_META_FILE).exists()


def test_interrupted_run_leaves_no_run_folder(tmp_path, data_dir, monkeypatch):
    from heldout.models import checkpoints

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    config = _config(data_dir, subset_ratios=(0.5,), runs_per_ratio=1, epochs=1)
    monkeypatch.setattr(checkpoints, "save", fail)
    with pytest.raises(KeyboardInterrupt):
        training.train_experiment(config, tmp_path / "exp")
    assert not (tmp_path / "exp" / "0.5" / "0").exists()
    assert not list((tmp_path / "exp" / "0.5").iterdir())  # temporary removed too
    monkeypatch.undo()
    assert len(training.train_experiment(config, tmp_path / "exp").written) == 1


def test_same_seed_same_runs_whatever_the_grouping(tmp_path, data_dir):
    """Two tiny experiments with one seed, trained 2 and 1 models at a time, agree exactly."""
    config = _config(data_dir, subset_ratios=(0.5,), runs_per_ratio=2, epochs=1)
    a = training.train_experiment(config, tmp_path / "a")
    b = training.train_experiment(dataclass_replace(config, models_per_step=1), tmp_path / "b")
    for run_a, run_b in zip(a.written, b.written, strict=True):
        aux_a, aux_b = run_a.load_aux().as_dict(), run_b.load_aux().as_dict()
        for key in aux_a:
            np.testing.assert_array_equal(aux_a[key], aux_b[key], err_msg=key)
        reader_a = tf.train.load_checkpoint(str(run_a.checkpoint_dir / "ckpt-1"))
        reader_b = tf.train.load_checkpoint(str(run_b.checkpoint_dir / "ckpt-1"))
        for name in reader_a.get_variable_to_shape_map():
            if name.startswith("model/"):
                np.testing.assert_array_equal(
                    reader_a.get_tensor(name), reader_b.get_tensor(name), err_msg=name
                )
    other = (
        training.train_experiment(dataclass_replace(config, seed=4), tmp_path / "c")
        .written[0]
        .load_aux()
    )
    assert not np.array_equal(
        np.sort(other.index_train), np.sort(a.written[0].load_aux().index_train)
    )

    # The command line a user runs: demo.py on a trained run, N out of N.
    completed = run_script(
        "demo.py", f"--model_dir={a.written[1].path}", f"--data_dir={data_dir}", timeout=120
    )
    assert_demo_matches_all(completed, NUM_TRAIN + NUM_TEST)


def test_small_inception_trains_one_model_at_a_time(tmp_path):
    """The other architecture: plain Sonnet training, same layout and cross-check."""
    from heldout.evaluation import evaluate as evaluation
    from heldout.models import build_model, checkpoints

    folder = tmp_path / "tiny"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, count in (("train", 64), ("test", 32)):
        labels = rng.integers(0, 10, count)
        images = (rng.random((count, 28, 28)) * 255).astype(np.uint8)
        image_stem, label_stem = idx.IDX_FILES[split]
        write_idx(folder / f"{image_stem}.gz", images)
        write_idx(folder / f"{label_stem}.gz", labels.astype(np.uint8))
    config = _config(
        str(folder),
        arch="small_inception",
        subset_ratios=(0.5,),
        runs_per_ratio=1,
        epochs=1,
        batch_size=16,
        val_examples=16,
    )
    events = []
    result = training.train_experiment(config, tmp_path / "exp", on_event=events.append)
    assert len(result.written) == 1
    assert sum(isinstance(e, training.EpochLog) for e in events) == 1
    experiment = release.open_experiment(tmp_path / "exp")
    assert experiment.meta.arch == "small_inception"
    # Restore as demo.py does, with the experiment's 1-channel image shape.
    model = build_model("small_inception", 10)
    info = checkpoints.restore(model, experiment.runs[0].path, image_shape=(28, 28, 1))
    assert info.epoch == 1
    source = datasets.source_for_meta(experiment.meta)
    evaluator = evaluation.Evaluator(model)
    results = [evaluator.evaluate(source, split) for split in ("train", "test")]
    checks = evaluation.cross_check(experiment.runs[0], results)
    assert all(c.all_match for c in checks.values())
    assert sum(c.matches for c in checks.values()) == 96


def dataclass_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)
