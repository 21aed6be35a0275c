"""Mixed precision of the convolutional models (`heldout.training.precision`)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

from heldout import models
from heldout.errors import TrainingError
from heldout.training import TrainingConfig, precision


@pytest.mark.parametrize(
    "module, shape",
    [
        (lambda: snt.Conv2D(5, 3, stride=2, padding="SAME", with_bias=True), (2, 9, 9, 3)),
        (lambda: snt.Conv2D(4, 3, padding="VALID", with_bias=False), (2, 7, 7, 2)),
        (lambda: snt.Conv2D(4, 5, padding=snt.pad.causal, rate=2), (1, 11, 11, 2)),
        (lambda: snt.Linear(6), (3, 7)),
        (lambda: snt.Linear(6, with_bias=False), (3, 7)),
    ],
)
def test_the_written_products_equal_sonnets_own_call_bit_for_bit(module, shape):
    module = module()
    x = tf.constant(np.random.default_rng(0).normal(size=shape), tf.float32)
    expected = module(x)  # builds the module (float32 variables) through Sonnet
    product = precision._conv_in if isinstance(module, snt.Conv2D) else precision._linear_in
    np.testing.assert_array_equal(product(module, x, tf.float32).numpy(), expected.numpy())


def _built_inception():
    tf.random.set_seed(3)
    model = models.build_model("small_inception", 10)
    models.ensure_variables(model, (32, 32, 3))
    return model


def test_inside_the_context_products_run_in_bfloat16_and_return_float32():
    model = _built_inception()
    x = tf.constant(np.random.default_rng(1).random((2, 32, 32, 3)), tf.float32)
    full = model(x, is_training=False).numpy()
    with precision.bfloat16_products("bfloat16"):
        mixed = model(x, is_training=False)
    assert mixed.dtype == tf.float32
    assert not np.array_equal(mixed.numpy(), full)  # the products were rounded
    np.testing.assert_allclose(mixed.numpy(), full, rtol=0.1, atol=0.1 * np.abs(full).max())
    # Outside the context (and with float32 asked) nothing changes.
    np.testing.assert_array_equal(model(x, is_training=False).numpy(), full)
    with precision.bfloat16_products("float32"):
        np.testing.assert_array_equal(model(x, is_training=False).numpy(), full)
    assert all(v.dtype == tf.float32 for v in model.variables if v.dtype.is_floating)


def test_a_traced_step_holds_bfloat16_products_and_gradients_reach_float32_weights():
    model = _built_inception()

    @tf.function
    def loss_and_grads(x):
        with tf.GradientTape() as tape, precision.bfloat16_products("bfloat16"):
            loss = tf.reduce_sum(model(x, is_training=True))
        return loss, tape.gradient(loss, model.trainable_variables)

    x = tf.zeros((2, 32, 32, 3))
    graph = loss_and_grads.get_concrete_function(x).graph
    conv_types = {
        op.get_attr("T") for op in graph.get_operations() if op.type in ("Conv2D", "MatMul")
    }
    assert tf.bfloat16.as_datatype_enum in conv_types
    _, grads = loss_and_grads(x)
    assert all(g is not None and g.dtype == tf.float32 for g in grads)


def test_another_thread_is_not_affected_while_one_is_inside():
    model = _built_inception()
    x = tf.constant(np.random.default_rng(2).random((1, 32, 32, 3)), tf.float32)
    full = model(x, is_training=False).numpy()
    inside, release, seen = threading.Event(), threading.Event(), {}

    def hold():
        with precision.bfloat16_products("bfloat16"):
            inside.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(30)
    seen["other"] = model(x, is_training=False).numpy()
    release.set()
    holder.join(30)
    np.testing.assert_array_equal(seen["other"], full)


def test_auto_resolves_from_the_device_and_unknown_names_are_refused(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_bf16\n")
    assert precision._cpu_flags(cpuinfo) >= {"avx2", "avx512_bf16"}
    if not tf.config.list_physical_devices("GPU"):
        monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512_bf16"})
        assert precision.resolve_compute_dtype("auto")[0] == "bfloat16"
        monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2"})
        dtype, why = precision.resolve_compute_dtype("auto")
        assert dtype == "float32" and "AVX512-BF16" in why
    assert precision.resolve_compute_dtype("bfloat16") == ("bfloat16", "as requested")
    with pytest.raises(TrainingError, match="float16"):
        precision.resolve_compute_dtype("float16")
    with pytest.raises(TrainingError, match="compute_dtype"):
        TrainingConfig(arch="small_inception", compute_dtype="auto")


def test_convolutional_archs_accept_bfloat16_and_record_it():
    config = TrainingConfig(arch="resnet50", compute_dtype="bfloat16")
    assert config.defining()["compute_dtype"] == "bfloat16"


def test_resnet50_runs_its_products_in_bfloat16_too():
    tf.random.set_seed(4)
    model = models.build_model("resnet50", 10)
    x = tf.constant(np.random.default_rng(3).random((1, 32, 32, 3)), tf.float32)
    models.ensure_variables(model, (32, 32, 3))
    rng = np.random.default_rng(5)
    for v in model.trainable_variables:  # Sonnet starts the logits layer at zero
        if "logits" in v.name:
            v.assign(rng.normal(size=v.shape).astype(np.float32))
    full = model(x, is_training=False).numpy()
    with precision.bfloat16_products("bfloat16"):
        mixed = model(x, is_training=False).numpy()
    assert not np.array_equal(mixed, full)
    np.testing.assert_allclose(mixed, full, atol=0.1 * np.abs(full).max())
