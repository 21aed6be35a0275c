"""Checkpoints outside TensorFlow: safetensors + model.json, the numpy forward pass, ONNX.

Models are real TF models (`heldout.models`) with weights made non-trivial (BatchNorm
statistics from a training-mode pass over real images, random BatchNorm scales/offsets
and classifier), saved as release-format checkpoints, exported, and compared with the
TensorFlow model restored from the same checkpoint. Inputs are real images: Debian's
Fashion-MNIST test images for the MLP (28x28x1); for SmallInception, 32x32x3 images made
of three different Fashion-MNIST images (one per channel, padded by 2); for ResNet-50,
those upsampled to 64x64 and normalized with the ImageNet mean/std (a small input keeps
the test fast; the ResNet takes any size).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heldout import export
from heldout.datasets.idx import DEBIAN_FASHION_MNIST_DIR
from heldout.errors import CheckpointError, ModelError, StaleResultError
from heldout.export.safetensors import release_name
from heldout.release import layout as release
from heldout.release.aux_arrays import aux_from_predictions

ROOT = Path(__file__).resolve().parents[2]
SPEC_DIR = ROOT / "tests" / "data" / "checkpoint_variables"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@pytest.fixture(scope="module")
def fashion():
    """Eight Debian Fashion-MNIST test images, float32 / 255, [8, 28, 28, 1]."""
    from heldout.datasets.idx import load_idx_split

    if not Path(DEBIAN_FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"Debian's Fashion-MNIST is not installed ({DEBIAN_FASHION_MNIST_DIR})")
    images = load_idx_split(DEBIAN_FASHION_MNIST_DIR, "test").images[:24]
    return images.astype(np.float32) / 255.0


def _rgb32(fashion: np.ndarray, count: int) -> np.ndarray:
    """[count, 32, 32, 3]: three different real images per example, one per channel."""
    padded = np.pad(fashion[..., 0], ((0, 0), (2, 2), (2, 2)))
    return np.stack([padded[k : k + count] for k in (0, 8, 16)], axis=-1)


def _inputs(arch: str, fashion: np.ndarray) -> np.ndarray:
    if arch == "mlp":
        return fashion[:4]
    rgb = _rgb32(fashion, 4)
    if arch == "small_inception":
        return rgb
    return (np.repeat(np.repeat(rgb, 2, axis=1), 2, axis=2) - IMAGENET_MEAN) / IMAGENET_STD


def _trained_looking_model(arch: str, num_classes: int, images: np.ndarray, seed: int = 0):
    """A model whose BatchNorms and classifier are not at their initial values."""
    import tensorflow as tf

    from heldout import models

    model = models.build_model(arch, num_classes)
    models.ensure_variables(model, images.shape[1:] if arch == "mlp" else None)
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        name = variable.name.split("/")[-1]
        if name.startswith("scale"):
            # The residual branches' last BatchNorm (Sonnet starts it at 0) kept small, as in
            # trained ResNets: full-size branches make a random net's float32 error ~1e-4.
            low, high = (0.1, 0.3) if "batchnorm_2" in variable.name else (0.5, 1.5)
            variable.assign(rng.uniform(low, high, variable.shape).astype(np.float32))
        elif name.startswith("offset"):
            variable.assign(rng.normal(0, 0.2, variable.shape).astype(np.float32))
        elif len(variable.shape) == 2 and name.startswith("w"):  # linear layers
            std = np.sqrt(2.0 / variable.shape[0])  # He: activations keep their scale
            variable.assign(rng.normal(0, std, variable.shape).astype(np.float32))
        elif name.startswith("b"):
            variable.assign(rng.normal(0, 0.1, variable.shape).astype(np.float32))
    if arch != "mlp":  # moving statistics = this batch's statistics (one debiased EMA step)
        model(tf.constant(images), is_training=True)
    return model


def _write_run(experiment_dir: Path, ratio: float, run_id: int, model, n_train=20, n_test=8):
    from heldout.models import checkpoints

    rng = np.random.default_rng(run_id)
    mask = rng.random(n_train) < ratio
    aux = aux_from_predictions(mask, rng.random(n_train) < 0.5, rng.random(n_test) < 0.5, rng=rng)
    return release.write_run(
        experiment_dir,
        ratio,
        run_id,
        aux,
        write_checkpoint=lambda folder: checkpoints.save(model, folder, epoch=3, global_step=7),
    )


def _spec_names(file: str) -> set[str]:
    names = set()
    for line in (SPEC_DIR / file).read_text().splitlines():
        key = line.split("\t")[0]
        name = release_name(key)
        if name is not None:
            names.add(name)
    return names


@pytest.mark.parametrize(
    "arch, num_classes",
    [("mlp", 10), ("small_inception", 10), ("resnet50", 10)],
)
def test_numpy_forward_equals_tensorflow_on_real_images(tmp_path, fashion, arch, num_classes):
    from heldout import models
    from heldout.models import checkpoints

    images = _inputs(arch, fashion)
    model = _trained_looking_model(arch, num_classes, images)
    run = _write_run(tmp_path / "exp", 0.5, 0, model)
    # The check at export time is exercised by the other tests; here the comparison is
    # made explicitly against a model restored afresh (one numpy pass keeps it fast).
    result = export.export_run(run.path, tmp_path / "out", check=False)
    assert not result.reused and result.checks == {}

    # A fresh TF model restored from the checkpoint, against the numpy pass over the file.
    restored = models.build_model(arch, num_classes)
    checkpoints.restore(restored, run.path, images.shape[1:] if arch == "mlp" else None)
    reference = restored(images, is_training=False).numpy()
    exported = export.load_export(tmp_path / "out")
    ours = export.numpy_forward(exported, images)
    assert ours.shape == (len(images), num_classes)
    assert np.abs(reference).max() > 0.3  # logits that say something
    assert np.abs(ours - reference).max() <= 1e-4
    np.testing.assert_array_equal(ours.argmax(1), reference.argmax(1))

    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert (meta["arch"], meta["num_classes"], meta["epoch"], meta["global_step"]) == (
        arch,
        num_classes,
        3,
        7,
    )
    assert meta["batch_norm_epsilon"] == 1e-5
    identity = meta["source"]["checkpoint_files"]
    assert {Path(f["path"]).name for f in identity} >= {"ckpt-3.index"}
    if arch == "small_inception":
        assert set(exported.tensors) == _spec_names("smallinception_cifar10_variables.txt")
        assert exported.tensors["stage1/_body/0/conv1x1/conv/w"].shape == (1, 1, 96, 32)
        assert exported.tensors["conv1/bn/moving_mean/average"].shape == (1, 1, 1, 96)
    if arch == "resnet50":
        assert set(exported.tensors) == _spec_names("resnet50_imagenet_variables.txt")


def test_refusals(tmp_path, fashion):
    """Another checkpoint's export, wrong image shapes, a tampered or incomplete file."""
    images = _inputs("mlp", fashion)
    first = _write_run(tmp_path / "exp", 0.5, 0, _trained_looking_model("mlp", 10, images, 1))
    second = _write_run(tmp_path / "exp", 0.5, 1, _trained_looking_model("mlp", 10, images, 2))
    out = tmp_path / "out"
    export.export_run(first.path, out)
    assert export.export_run(first.path, out).reused  # same checkpoint: kept
    with pytest.raises(StaleResultError, match="holds an export of .*ckpt-3"):
        export.export_run(second.path, out)
    with pytest.raises(CheckpointError, match="100"):
        export.export_run(first.path, tmp_path / "wrong", arch="mlp", num_classes=100)
    assert not (tmp_path / "wrong").exists()  # nothing left behind

    model = export.load_export(out)
    with pytest.raises(ModelError, match="takes images of 784 values"):
        export.numpy_forward(model, np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ModelError, match=r"must be \[B, H, W, C\]"):
        export.numpy_forward(model, np.zeros((28, 28, 1), np.float32))
    incomplete = dict(model.tensors)
    del incomplete["logits/b"]
    with pytest.raises(ModelError, match="no tensor 'logits/b'"):
        export.numpy_forward(incomplete, images, {"arch": "mlp"})
    extra = {**model.tensors, "stage1/_body/0/conv1x1/conv/w": np.zeros((1, 1, 3, 3))}
    with pytest.raises(ModelError, match="does not use"):
        export.numpy_forward(extra, images, {"arch": "mlp"})
    blob = out / "model.safetensors"
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 differs"):
        export.load_export(out)


def test_onnx_export_matches_tensorflow(tmp_path, fashion):
    pytest.importorskip("tf2onnx", reason="ONNX export needs tf2onnx (pyproject dependencies)")
    pytest.importorskip("onnxruntime", reason="checking ONNX needs onnxruntime")
    # The MLP keeps the conversion fast; SmallInception converts as well (tf2onnx 1.17).
    images = _inputs("mlp", fashion)
    model = _trained_looking_model("mlp", 10, images)
    run = _write_run(tmp_path / "exp", 0.5, 0, model)
    result = export.export_run(run.path, tmp_path / "out", formats=["onnx"], probe_images=images)
    assert result.checks["onnx_vs_tensorflow_max_abs"] <= 1e-4
    logits = export.onnx_forward(tmp_path / "out" / "model.onnx", images)
    reference = model(images, is_training=False).numpy()
    assert np.abs(logits - reference).max() <= 1e-4


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "export_checkpoint.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_many_runs_resumable_atomic_and_umask_readable(tmp_path, fashion):
    images = _inputs("mlp", fashion)
    experiment_dir = tmp_path / "mnist-mlp"
    for ratio, run_id in ((0.5, 0), (0.5, 1), (0.5, 2), (0.7, 0)):
        _write_run(experiment_dir, ratio, run_id, _trained_looking_model("mlp", 10, images))
    out = tmp_path / "exported"
    old_umask = os.umask(0o022)
    try:
        done = _cli(
            f"--experiment_dir={experiment_dir}",
            f"--output_dir={out}",
            "--subset_ratio=0.5",
            "--max_runs=2",
        )
    finally:
        os.umask(old_umask)
    assert done.returncode == 0, done.stderr
    assert "exported 2 of 2 selected runs" in done.stdout, done.stdout
    folders = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*"))
    assert folders == ["0.5/0", "0.5/1"]
    assert not list(out.rglob(".export-*"))  # no temporaries left
    for path in [*out.rglob("model.*"), *out.glob("*/*")]:
        assert path.stat().st_mode & 0o044 == 0o044, path  # group/other readable

    # The rest in this process (a TF start per command is slow): the same library call.
    experiment = release.open_experiment(experiment_dir)
    again = export.export_experiment(experiment, out)
    assert (len(again.exported), len(again.reused), again.failed) == (2, 2, ())
    record = json.loads((out / "0.7" / "0" / "model.json").read_text())
    assert record["source"]["subset_ratio"] == 0.7 and record["source"]["run_id"] == 0

    # A changed checkpoint is not mistaken for the exported one: that run fails.
    index = experiment_dir / "0.5" / "1" / "checkpoints" / "ckpt-3.index"
    os.utime(index, ns=(index.stat().st_atime_ns, index.stat().st_mtime_ns + 10**9))
    stale = export.export_experiment(experiment, out)
    assert len(stale.reused) == 3 and len(stale.failed) == 1
    assert "0.5/1" in stale.failed[0][0] and "holds an export of" in stale.failed[0][1]


def test_cli_one_line_errors(tmp_path):
    missing = _cli(f"--model_dir={tmp_path / 'nothing'}", f"--output_dir={tmp_path / 'o'}")
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    ours = [line for line in missing.stderr.splitlines() if line.startswith("export_checkpoint:")]
    assert ours == [
        f"export_checkpoint: error: {tmp_path / 'nothing'}: no such run folder or checkpoint"
    ]
    both = _cli("--output_dir=x")
    assert both.returncode == 2 and "--model_dir or --experiment_dir" in both.stderr
