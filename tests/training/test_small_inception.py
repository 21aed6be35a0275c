"""Acceptance: SmallInception on 32x32x3 data, as a user runs it, cross-checked by demo.py.

Fashion-MNIST (Debian's files) padded from 28x28 to 32x32 with zeros and tiled to three
channels, written as a `.npz` (`x_train`, ...), trained by `tools/train_heldout.py
--dataset=npz --arch=small_inception` for one epoch on a few hundred examples with the
CIFAR augmentation, bfloat16 products (mixed precision) and a mid-training checkpoint
setting; the run must be written in the
release layout and `demo.py` must reproduce its aux arrays N out of N.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tool_runs import assert_demo_matches_all, run_script

from heldout.datasets import idx
from heldout.errors import DatasetError
from heldout.release import layout as release

NUM_TRAIN, NUM_TEST = 256, 64


def _cifar_like_fashion(path: Path) -> Path:
    try:
        splits = [idx.load_idx_split(idx.DEBIAN_FASHION_MNIST_DIR, s) for s in ("train", "test")]
    except (DatasetError, OSError) as error:
        pytest.skip(f"Debian's Fashion-MNIST is not usable ({error}); setup.sh installs it")

    def rgb32(images):  # [N, 28, 28, 1] -> [N, 32, 32, 3]
        return np.tile(np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0))), (1, 1, 1, 3))

    train, test = splits
    np.savez(
        path,
        x_train=rgb32(train.images[:NUM_TRAIN]),
        y_train=train.labels[:NUM_TRAIN],
        x_test=rgb32(test.images[:NUM_TEST]),
        y_test=test.labels[:NUM_TEST],
    )
    return path


def test_small_inception_on_32x32x3_trains_and_demo_cross_checks(tmp_path):
    data = _cifar_like_fashion(tmp_path / "fashion32.npz")
    out = tmp_path / "fashion32-small_inception"
    completed = run_script(
        "tools/train_heldout.py",
        f"--output_dir={out}",
        "--dataset=npz",
        f"--data_dir={data}",
        "--arch=small_inception",
        "--subset_ratios=0.5",
        "--runs_per_ratio=1",
        "--epochs=1",
        "--batch_size=64",
        "--learning_rate=0.1",
        "--augment",
        "--checkpoint_every=1",
        "--val_examples=64",
        "--compute_dtype=bfloat16",
        timeout=1200,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    experiment = release.open_experiment(out)
    meta = experiment.meta
    assert (meta.arch, meta.image_shape, meta.dataset) == ("small_inception", (32, 32, 3), "npz")
    assert meta.extra["training"]["augment"] is True
    assert meta.extra["training"]["compute_dtype"] == "bfloat16"  # mixed precision
    (run,) = experiment.runs
    assert (run.path / release.AUX_ARRAYS_FILE).is_file()
    assert (run.checkpoint_dir / "ckpt-1.index").is_file()
    assert not list(run.path.parent.glob(".0.partial*"))
    demo = run_script("demo.py", f"--model_dir={run.path}", timeout=600)
    assert_demo_matches_all(demo, NUM_TRAIN + NUM_TEST)
