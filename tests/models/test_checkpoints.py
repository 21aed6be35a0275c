"""Checkpoints: strict restore of release-format checkpoints, clear errors, save format.

Release-like checkpoints are built from the variable lists alone (nested `tf.Module`s named
after the key paths, random values), never from our model classes, so the restore tests
check our models against the release's format and not against themselves.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from heldout import models
from heldout.models import checkpoints
from heldout.models.checkpoints import CheckpointError
from tests.models.release_variables import read_spec

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def write_spec_checkpoint(
    folder: Path, spec: dict[str, list[int]], seed: int = 0, epoch: int = 79, step: int = 7800
) -> tuple[Path, dict[str, np.ndarray]]:
    """Writes `folder/ckpt-<epoch>` with exactly the keys of `spec` and random values.

    The object graph is a tree of plain `tf.Module`s whose attribute names are the key
    components ("0", "1", ... for list items: the object graph only records names).
    Counters (`_counter`, `epoch`, `global_step`) are int64 as Sonnet and the release
    write them; everything else float32.
    """
    rng = np.random.default_rng(seed)
    root = tf.Module()
    values: dict[str, np.ndarray] = {}
    keep = []  # variables must stay alive until written
    for key, shape in spec.items():
        parts = key[: -len(SUFFIX)].split("/")
        node = root
        for part in parts[:-1]:
            if not hasattr(node, part):
                setattr(node, part, tf.Module())
            node = getattr(node, part)
        leaf = parts[-1]
        if leaf in ("_counter",) or key.startswith(("epoch/", "global_step/")):
            value = np.asarray(rng.integers(0, 10**6, size=shape), dtype=np.int64)
        elif "moving_variance" in key:  # positive, so restored models compute finite logits
            value = rng.uniform(0.5, 2.0, size=shape).astype(np.float32)
        else:
            value = rng.standard_normal(shape).astype(np.float32)
        if key.startswith("epoch/"):
            value = np.asarray(epoch, np.int64)
        if key.startswith("global_step/"):
            value = np.asarray(step, np.int64)
        var = tf.Variable(value)
        setattr(node, leaf, var)
        keep.append(var)
        values[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = tf.train.Checkpoint(
        **{name: getattr(root, name) for name in ("model", "epoch", "global_step")}
    )
    prefix = ckpt.write(str(folder / f"ckpt-{epoch}"))
    return Path(prefix), values


@pytest.fixture(scope="module")
def spec_ckpts(tmp_path_factory):
    """Release-like checkpoints for the three released models, written once."""
    out = {}
    for tag, filename in [
        ("cifar10", "smallinception_cifar10_variables.txt"),
        ("cifar100", "smallinception_cifar100_variables.txt"),
        ("imagenet", "resnet50_imagenet_variables.txt"),
    ]:
        run = tmp_path_factory.mktemp(f"{tag}-run")
        prefix, values = write_spec_checkpoint(run / "checkpoints", read_spec(filename))
        out[tag] = (run, prefix, values)
    return out


def assert_restored_equal(model, values):
    keys = checkpoints.model_checkpoint_keys(model)
    assert set(keys) == {k for k in values if k.startswith("model/")}
    for key, var in keys.items():
        np.testing.assert_array_equal(var.numpy(), values[key], err_msg=key)


@pytest.mark.parametrize(
    "tag,arch,num_classes",
    [
        ("cifar10", "small_inception", 10),
        ("cifar100", "small_inception", 100),
        ("imagenet", "resnet50", 1000),
    ],
)
def test_release_format_restores_every_value(spec_ckpts, tag, arch, num_classes):
    run, prefix, values = spec_ckpts[tag]
    model = models.build_model(arch, num_classes)
    info = checkpoints.restore(model, run)
    assert info == checkpoints.RestoreInfo(path=prefix, epoch=79, global_step=7800)
    assert_restored_equal(model, values)


def test_restored_model_computes_with_the_restored_statistics(spec_ckpts):
    run, _, values = spec_ckpts["cifar10"]
    model = models.build_model("small_inception", 10)
    checkpoints.restore(model, run / "checkpoints")  # the checkpoints/ folder works too
    images = tf.random.uniform((2, 32, 32, 3))
    logits = model(images)
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits.numpy()))
    w = values["model/_pred/w" + SUFFIX]
    b = values["model/_pred/b" + SUFFIX]
    np.testing.assert_allclose(
        logits.numpy(), model.features(images).numpy() @ w + b, rtol=1e-4, atol=1e-3
    )


def test_save_then_restore_round_trip(tmp_path):
    model = models.build_model("small_inception", 10)
    model(tf.random.uniform((4, 8, 8, 3)), is_training=True)  # move the statistics
    prefix = checkpoints.save(model, tmp_path, epoch=3, global_step=123)
    assert prefix == tmp_path / "checkpoints" / "ckpt-3"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "ckpt-3.data-00000-of-00001",
        "ckpt-3.index",
    ]
    other = models.build_model("small_inception", 10)
    info = checkpoints.restore(other, tmp_path)
    assert (info.epoch, info.global_step, info.path) == (3, 123, prefix)
    images = tf.random.uniform((3, 32, 32, 3))
    np.testing.assert_array_equal(model(images).numpy(), other(images).numpy())


def test_save_never_deletes_a_checkpoint_it_did_not_write(spec_ckpts, tmp_path):
    """Issue 13: pointed at a downloaded run, save used to delete the released checkpoint."""
    run, prefix, _ = spec_ckpts["cifar10"]
    released = tmp_path / "released-run"
    shutil.copytree(run, released)
    before = {p.name: p.read_bytes() for p in (released / "checkpoints").iterdir()}
    model = models.build_model("small_inception", 10)
    with pytest.raises(CheckpointError, match=r"already holds ckpt-79.*does not delete"):
        checkpoints.save(model, released, epoch=3, global_step=1)
    with pytest.raises(CheckpointError, match=r"ckpt-79: a checkpoint of that name exists"):
        checkpoints.save(model, released, epoch=79, global_step=1, keep_others=True)
    assert {p.name: p.read_bytes() for p in (released / "checkpoints").iterdir()} == before
    # keep_others writes beside it, and still keeps the released one.
    checkpoints.save(model, released, epoch=3, global_step=1, keep_others=True)
    names = {p.name for p in (released / "checkpoints").iterdir()}
    assert set(before) < names and "ckpt-3.index" in names
    assert (released / "checkpoints" / prefix.name).with_suffix(".index").read_bytes() == (
        before[prefix.name + ".index"]
    )


def test_restore_opens_the_checkpoint_once(spec_ckpts, monkeypatch):
    """Issue 13: checking and restoring used to open (and read the index of) it twice."""
    run, _, values = spec_ckpts["cifar10"]
    real = tf.train.load_checkpoint
    opened = []

    def counting_load_checkpoint(path):
        opened.append(path)
        return real(path)

    monkeypatch.setattr(tf.train, "load_checkpoint", counting_load_checkpoint)
    model = models.build_model("small_inception", 10)
    checkpoints.restore(model, run)
    assert len(opened) == 1
    assert_restored_equal(model, values)


def test_restore_in_place_assigns_every_variable(spec_ckpts, tmp_path):
    """One model restored from run A, then run B, equals B in every variable."""
    run_a, _, _ = spec_ckpts["cifar10"]
    run_b = tmp_path / "run-b"
    _, values_b = write_spec_checkpoint(
        run_b / "checkpoints",
        read_spec("smallinception_cifar10_variables.txt"),
        seed=1,
        epoch=3,
        step=30,
    )
    target = checkpoints.RestoreTarget(models.build_model("small_inception", 10))
    assert checkpoints.restore(target.model, run_a).epoch == 79
    info = target.restore(run_b)
    assert (info.epoch, info.global_step) == (3, 30)
    assert_restored_equal(target.model, values_b)
    assert len(target.model.variables) == len(target.variables)  # nothing left out
    fresh = models.build_model("small_inception", 10)
    checkpoints.restore(fresh, run_b)
    images = tf.random.uniform((2, 32, 32, 3))
    np.testing.assert_array_equal(target.model(images).numpy(), fresh(images).numpy())


def test_restore_target_refuses_models_with_variables_outside_checkpoints():
    """Restoring in place would keep such a variable's value from the previous run."""
    from tensorflow.python.trackable.data_structures import NoDependency

    class WithShadow(models.MLP):
        def __init__(self):
            super().__init__(10)
            self._shadow = NoDependency(tf.Variable(1.0, name="shadow"))

    with pytest.raises(CheckpointError, match=r"1 variable\(s\) are not part of its checkpoints"):
        checkpoints.RestoreTarget(WithShadow())


def test_failed_restore_in_place_assigns_nothing(spec_ckpts, tmp_path):
    run, _, values = spec_ckpts["cifar10"]
    target = checkpoints.RestoreTarget(models.build_model("small_inception", 10))
    target.restore(run)
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    data = next((broken / "checkpoints").glob("*.data-*"))
    _truncate(data, 0.5)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        target.restore(broken)
    assert_restored_equal(target.model, values)  # still the first checkpoint, entirely


def test_mlp_round_trip(tmp_path):
    model = models.build_model("mlp", 10)
    checkpoints.save(model, tmp_path, epoch=20, global_step=4700)
    other = models.build_model("mlp", 10)
    assert checkpoints.restore(other, tmp_path).epoch == 20
    for a, b in zip(model.variables, other.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ----------------------------------------------------------------------------- errors


def test_wrong_class_count(spec_ckpts):
    run, _, _ = spec_ckpts["cifar100"]
    model = models.build_model("small_inception", 10)
    with pytest.raises(CheckpointError) as e:
        checkpoints.restore(model, run)
    msg = str(e.value)
    assert "checkpoint has 100 classes, model built with 10" in msg
    assert "model/_pred/w: [336, 100] vs [336, 10]" in msg
    assert "model/_pred/b: [100] vs [10]" in msg
    # Nothing was assigned: the model still has its fresh initial values.
    assert not np.any(model.conv1.bn.moving_mean.average.numpy())


def test_wrong_architecture_resnet_into_inception(spec_ckpts):
    run, _, _ = spec_ckpts["imagenet"]
    with pytest.raises(
        CheckpointError, match=r"looks like resnet50 with 1000 classes.*arch='resnet50'"
    ):
        checkpoints.restore(models.build_model("small_inception", 10), run)


def test_wrong_architecture_inception_into_resnet(spec_ckpts):
    run, _, _ = spec_ckpts["cifar10"]
    with pytest.raises(CheckpointError) as e:
        checkpoints.restore(models.build_model("resnet50", 1000), run)
    msg = str(e.value)
    assert "looks like small_inception with 10 classes" in msg
    assert "model variables the checkpoint lacks (479)" in msg
    assert "checkpoint variables the model does not have (173)" in msg


def test_missing_and_extra_variables_are_listed(tmp_path):
    spec = read_spec("smallinception_cifar10_variables.txt")
    lost = "model/stage3/_body/1/conv3x3/bn/scale" + SUFFIX
    spec.pop(lost)
    spec["model/stage3/_downsample/conv/w" + SUFFIX] = [3, 3, 336, 400]
    write_spec_checkpoint(tmp_path / "checkpoints", spec)
    with pytest.raises(CheckpointError) as e:
        checkpoints.restore(models.build_model("small_inception", 10), tmp_path)
    msg = str(e.value)
    assert (
        "model variables the checkpoint lacks (1):\n    model/stage3/_body/1/conv3x3/bn/scale"
        in msg
    )
    assert (
        "checkpoint variables the model does not have (1):\n    model/stage3/_downsample/conv/w"
        in msg
    )


def test_missing_epoch_counter(tmp_path):
    model = models.build_model("small_inception", 10)
    models.ensure_variables(model)
    (tmp_path / "checkpoints").mkdir()
    tf.train.Checkpoint(model=model).write(str(tmp_path / "checkpoints" / "ckpt-1"))
    with pytest.raises(CheckpointError, match="no epoch and no global_step counter"):
        checkpoints.restore(models.build_model("small_inception", 10), tmp_path)


def test_no_checkpoint_names_the_folder(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "notes.txt").write_text("x")
    with pytest.raises(
        CheckpointError,
        match=rf"{tmp_path}/checkpoints: no checkpoint \(ckpt-\*\.index\).*notes\.txt",
    ):
        checkpoints.restore(models.build_model("mlp", 10), tmp_path)
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(
        CheckpointError, match=rf"{empty}: no checkpoint .*no checkpoints/ subfolder"
    ):
        checkpoints.find_checkpoint(empty)
    with pytest.raises(CheckpointError, match="no such run folder"):
        checkpoints.find_checkpoint(tmp_path / "nope")


def test_several_checkpoints(tmp_path):
    model = models.build_model("mlp", 10)
    checkpoints.save(model, tmp_path, epoch=1, global_step=1, keep_others=True)
    checkpoints.save(model, tmp_path, epoch=10, global_step=2, keep_others=True)
    with pytest.raises(CheckpointError, match=r"checkpoints: 2 checkpoints \(ckpt-1, ckpt-10\)"):
        checkpoints.restore(models.build_model("mlp", 10), tmp_path)
    # An explicit prefix picks one.
    info = checkpoints.restore(models.build_model("mlp", 10), tmp_path / "checkpoints" / "ckpt-10")
    assert (info.epoch, info.global_step) == (10, 2)
    assert checkpoints.find_checkpoint(tmp_path / "checkpoints" / "ckpt-1.index").name == "ckpt-1"


@pytest.fixture()
def saved_run(tmp_path):
    model = models.build_model("small_inception", 10)
    checkpoints.save(model, tmp_path, epoch=5, global_step=50)
    return tmp_path


def _truncate(path: Path, fraction: float):
    os.truncate(path, int(path.stat().st_size * fraction))


@pytest.mark.parametrize("which", ["index", "data"])
@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.98])
def test_truncated_files(saved_run, which, fraction):
    folder = saved_run / "checkpoints"
    target = next(p for p in folder.iterdir() if f".{which}" in p.name)
    _truncate(target, fraction)
    with pytest.raises(CheckpointError, match="truncated or corrupt") as e:
        checkpoints.restore(models.build_model("small_inception", 10), saved_run)
    assert "ckpt-5" in str(e.value)


def test_corrupt_data_file(saved_run):
    data = next((saved_run / "checkpoints").glob("ckpt-5.data-*"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 3 : len(raw) // 3 + 16] = b"\xff" * 16
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="truncated or corrupt.*Checksum does not match"):
        checkpoints.restore(models.build_model("small_inception", 10), saved_run)


def test_missing_data_file(saved_run):
    for f in (saved_run / "checkpoints").glob("ckpt-5.data-*"):
        f.unlink()
    with pytest.raises(CheckpointError, match=r"no ckpt-5\.data-\* file"):
        checkpoints.restore(models.build_model("small_inception", 10), saved_run)


def test_copy_of_checkpoint_folder_still_restores(saved_run, tmp_path_factory):
    # Checkpoints hold no absolute paths: a moved run folder restores.
    dest = tmp_path_factory.mktemp("moved") / "run"
    shutil.copytree(saved_run, dest)
    assert checkpoints.restore(models.build_model("small_inception", 10), dest).epoch == 5
