"""Models: checkpoint key layout against the release's variable lists, calling convention."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from heldout import models
from heldout.errors import HeldoutError, ModelError
from heldout.models import checkpoints
from tests.models.release_variables import read_spec


def model_keys(model) -> dict[str, list[int]]:
    models.ensure_variables(model)
    keys = {k: v.shape.as_list() for k, v in checkpoints.model_checkpoint_keys(model).items()}
    keys[checkpoints.EPOCH_KEY] = []
    keys[checkpoints.GLOBAL_STEP_KEY] = []
    return keys


@pytest.mark.parametrize(
    "arch,num_classes,spec_file",
    [
        ("small_inception", 10, "smallinception_cifar10_variables.txt"),
        ("small_inception", 100, "smallinception_cifar100_variables.txt"),
        ("resnet50", 1000, "resnet50_imagenet_variables.txt"),
    ],
)
def test_checkpoint_keys_equal_release_lists(arch, num_classes, spec_file):
    spec = read_spec(spec_file)
    keys = model_keys(models.build_model(arch, num_classes))
    assert sorted(set(spec) - set(keys)) == []  # nothing missing
    assert sorted(set(keys) - set(spec)) == []  # nothing extra
    assert keys == spec  # and every shape equal


def test_saved_checkpoint_has_exactly_the_release_keys(tmp_path):
    model = models.build_model("small_inception", 10)
    prefix = checkpoints.save(model, tmp_path, epoch=2, global_step=10)
    shapes, _ = checkpoints.read_variable_shapes(prefix)
    assert shapes == read_spec("smallinception_cifar10_variables.txt")


@pytest.mark.parametrize(
    "arch,num_classes,shape",
    [
        ("small_inception", 10, (32, 32, 3)),
        ("small_inception", 100, (16, 16, 3)),
        ("resnet50", 7, (32, 32, 3)),
        ("mlp", 10, (28, 28, 1)),
    ],
)
def test_call_convention(arch, num_classes, shape):
    model = models.build_model(arch, num_classes)
    images = tf.random.uniform((2, *shape))
    logits = model(images, is_training=False)
    assert logits.shape == (2, num_classes)
    assert logits.dtype == tf.float32
    # Inference mode is deterministic and does not touch the BatchNorm statistics.
    np.testing.assert_allclose(model(images).numpy(), logits.numpy(), rtol=1e-5, atol=1e-5)


def test_small_inception_training_mode_updates_moving_statistics():
    model = models.build_model("small_inception", 10)
    model(tf.zeros((1, 8, 8, 3)))
    before = model.conv1.bn.moving_mean._counter.numpy()
    model(tf.random.uniform((4, 8, 8, 3)), is_training=True)
    assert model.conv1.bn.moving_mean._counter.numpy() == before + 1


def test_small_inception_is_a_global_max_pool_over_336_features():
    model = models.build_model("small_inception", 10)
    assert model.features(tf.zeros((3, 32, 32, 3))).shape == (3, 336)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("cifar10-inception", ("small_inception", 10)),
        ("cifar100-inception", ("small_inception", 100)),
        ("imagenet-resnet50", ("resnet50", 1000)),
        ("/data/release/cifar100-inception/", ("small_inception", 100)),
        ("mnist-mlp", ("mlp", 10)),
        ("fashion_mnist-heldout", ("mlp", 10)),
    ],
)
def test_arch_for_experiment_from_name(name, expected):
    assert models.arch_for_experiment(name) == expected


def test_arch_for_experiment_overrides_and_meta():
    assert models.arch_for_experiment("cifar10-inception", arch="resnet50") == ("resnet50", 10)
    assert models.arch_for_experiment("cifar10-inception", num_classes=7) == (
        "small_inception",
        7,
    )

    class Meta:  # ExperimentMeta-like
        name = "my-experiment"
        arch = "mlp"
        num_classes = 3

    assert models.arch_for_experiment(Meta()) == ("mlp", 3)
    Meta.arch, Meta.num_classes, Meta.name = None, None, "cifar100-inception"
    assert models.arch_for_experiment(Meta()) == ("small_inception", 100)


def test_arch_for_experiment_unknown_says_what_to_pass():
    with pytest.raises(ModelError, match="pass arch="):
        models.arch_for_experiment("something-else")


def test_unknown_architecture_is_a_model_error():
    """Issue 13: user mistakes are HeldoutErrors (a CLI prints one line), not ValueErrors."""
    with pytest.raises(ModelError, match="known: small_inception, resnet50, mlp"):
        models.build_model("vgg16", 10)
    for arch in models.ARCHS:
        with pytest.raises(ModelError, match="at least 2"):
            models.build_model(arch, 1)
    assert issubclass(ModelError, HeldoutError)
