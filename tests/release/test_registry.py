"""The registry of released experiments: names, facts, split sizes, and the unknown name."""

import numpy as np
import pytest

from heldout.errors import InconsistentRunError, UsageError
from heldout.release import layout, registry
from heldout.release.aux_arrays import aux_from_predictions
from heldout.release.reading import SplitSizeCheck

RELEASED = {
    # name: (arch, classes, dataset, index order, image shape, N, N_test, MD5)
    "cifar10-inception": (
        "small_inception",
        10,
        "cifar10:3.0.2",
        "tfds",
        (32, 32, 3),
        50_000,
        10_000,
        "bc3b75203381709f8224810946be14b1",
    ),
    "cifar100-inception": (
        "small_inception",
        100,
        "cifar100",
        "tfds",
        (32, 32, 3),
        50_000,
        10_000,
        "f87218368528afa6e2407c8410f1ffa1",
    ),
    "imagenet-resnet50": (
        "resnet50",
        1000,
        "imagenet2012",
        "tfrecord_index",
        (224, 224, 3),
        1_281_167,
        50_000,
        "64c39ef7702462b83959af9de622b4b8",
    ),
}


def test_the_registry_names_exactly_the_released_experiments():
    assert sorted(registry.EXPERIMENTS) == sorted(RELEASED)
    assert sorted(registry.ARTIFACTS) == sorted(RELEASED)


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_each_spec_holds_the_facts_of_the_release(name):
    spec = registry.experiment_spec(name)
    arch, classes, dataset, order, shape, num_train, num_test, md5 = RELEASED[name]
    assert spec.name == name
    assert (spec.arch, spec.num_classes, spec.dataset, spec.index_order) == (
        arch,
        classes,
        dataset,
        order,
    )
    assert spec.image_shape == shape
    assert (spec.num_train, spec.num_test) == (num_train, num_test)
    assert spec.artifact.md5 == md5 and spec.artifact.filename == f"{name}.tar.gz"
    assert spec.artifact.http_url == (
        f"http://storage.googleapis.com/gresearch/heldout-training-checkpoints/{name}.tar.gz"
    )
    assert spec.artifact.gcs_url == f"gs://gresearch/heldout-training-checkpoints/{name}.tar.gz"


def test_unknown_name_is_a_usage_error_listing_the_registered_names():
    with pytest.raises(registry.UnknownExperimentError) as caught:
        registry.experiment_spec("cifar10-resnet")
    message = str(caught.value)
    assert message.startswith("unknown experiment 'cifar10-resnet'; known experiments: ")
    for name in RELEASED:
        assert name in message
    assert isinstance(caught.value, UsageError) and isinstance(caught.value, KeyError)
    assert not message.startswith('"')  # not KeyError's quoted form


def test_split_sizes_of_a_released_experiment_refuse_a_run_of_other_sizes(tmp_path):
    meta = layout.read_experiment_meta(tmp_path / "cifar100-inception")
    assert (meta.num_train, meta.num_test) == (50_000, 10_000)
    rng = np.random.default_rng(0)
    odd = aux_from_predictions(rng.random(12) < 0.5, rng.random(12) < 0.5, rng.random(5) < 0.5, rng)
    check = SplitSizeCheck(meta.num_train, meta.num_test, reference="the registry")
    with pytest.raises(InconsistentRunError, match="but the registry has N=50000"):
        check.check(odd)
