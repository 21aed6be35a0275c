"""Tiny experiments in the released layout for the tests that restore checkpoints.

One place builds the random splits and `.npz` data, records the experiment's meta and exports
a model as a run (correctness from `heldout.evaluation.evaluate`, so re-evaluating it matches
N out of N). TensorFlow is imported only when a run is exported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heldout.datasets.base import ArraySplit
from heldout.datasets.numpy_source import NpzSource, save_npz
from heldout.release import layout as release

NUM_CLASSES = 10


def random_split(
    n: int, image_shape: tuple[int, ...], num_classes: int, rng: np.random.Generator
) -> ArraySplit:
    """`n` random uint8 images and int64 labels below `num_classes` (images drawn first)."""
    return ArraySplit(
        images=rng.integers(0, 256, size=(n, *image_shape), dtype=np.uint8),
        labels=rng.integers(0, num_classes, size=n).astype(np.int64),
    )


def random_npz_data(
    root: Path,
    image_shape: tuple[int, int, int],
    num_train: int,
    num_test: int,
    rng: np.random.Generator,
) -> tuple[Path, dict[str, ArraySplit]]:
    """`<root>/tiny.npz` of random uint8 images and labels, and the splits written."""
    splits = {
        split: random_split(n, image_shape, NUM_CLASSES, rng)
        for split, n in (("train", num_train), ("test", num_test))
    }
    data_path = root / "tiny.npz"
    save_npz(data_path, splits, num_classes=NUM_CLASSES)
    return data_path, splits


def write_npz_meta(
    experiment_dir: Path, arch: str, image_shape: tuple[int, int, int], data_path: Path
) -> None:
    """Records that the experiment's runs index the rows of `data_path`."""
    release.write_experiment_meta(
        experiment_dir,
        release.ExperimentMeta(
            name=experiment_dir.name,
            arch=arch,
            num_classes=NUM_CLASSES,
            dataset="npz",
            index_order="rows",
            image_shape=image_shape,
            extra={"data_dir": str(data_path)},
        ),
    )


def export_run(
    experiment_dir: Path,
    subset_ratio: float,
    run_id: int,
    model,
    data_path: Path,
    train_mask: np.ndarray,
    *,
    epoch: int,
    global_step: int,
    rng: np.random.Generator,
    batch_size: int = 16,
) -> release.Run:
    """Evaluates `model` on the data and writes it as a run with its checkpoint."""
    from heldout.evaluation import evaluate as evaluation
    from heldout.models import checkpoints
    from heldout.release.aux_arrays import aux_from_predictions

    source = NpzSource(data_path)
    train = evaluation.evaluate(model, source, "train", batch_size=batch_size)
    test = evaluation.evaluate(model, source, "test", batch_size=batch_size)
    aux = aux_from_predictions(train_mask, train.correctness, test.correctness, rng=rng)
    return release.write_run(
        experiment_dir,
        subset_ratio,
        run_id,
        aux,
        write_checkpoint=lambda folder: checkpoints.save(
            model, folder, epoch=epoch, global_step=global_step
        ),
    )
