"""Training sources (heldout.training.data): a .npz file and a TFDS dataset, end to end.

The TFDS dataset is built offline in the test with `tfds.core` from numpy arrays, under a
name TFDS has never registered (`skip_registration`): the trainer, and demo.py in another
process, read it from its prepared files alone, as they would any TFDS dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tool_runs import assert_demo_matches_all, run_script
from training_slice import small_config

from heldout import datasets, training
from heldout.datasets import idx
from heldout.errors import DatasetError, TrainingError
from heldout.evaluation import evaluate as evaluation
from heldout.release import layout as release
from heldout.training.data import open_source

NUM_TRAIN, NUM_TEST = 200, 60


def _mlp_config(dataset, data_dir) -> training.TrainingConfig:
    return small_config(
        data_dir, dataset=dataset, batch_size=32, models_per_step=2, val_examples=20, seed=5
    )


@pytest.fixture(scope="module")
def fashion_arrays():
    """The first examples of Debian's Fashion-MNIST (skips when it is not installed)."""
    try:
        train = idx.load_idx_split(idx.DEBIAN_FASHION_MNIST_DIR, "train")
        test = idx.load_idx_split(idx.DEBIAN_FASHION_MNIST_DIR, "test")
    except (DatasetError, OSError) as error:
        pytest.skip(f"Debian's Fashion-MNIST is not usable ({error}); setup.sh installs it")
    return (
        train.images[:NUM_TRAIN, ..., 0],
        train.labels[:NUM_TRAIN],
        test.images[:NUM_TEST, ..., 0],
        test.labels[:NUM_TEST],
    )


def _write_xy(path: Path, x_train, y_train, x_test, y_test) -> Path:
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def _cross_check(run_or_experiment_dir: Path) -> tuple[int, int]:
    """What demo.py does, in process: the recorded source, every run restored and checked."""
    experiment = release.open_experiment(run_or_experiment_dir)
    source = datasets.source_for_meta(experiment.meta)
    matches = total = 0
    for run in experiment.runs:
        check = evaluation.check_run(run, source, meta=experiment.meta)
        matches, total = matches + check.matches, total + check.total
    return matches, total


def test_npz_source_trains_end_to_end(tmp_path, fashion_arrays):
    path = _write_xy(tmp_path / "fashion.npz", *fashion_arrays)
    events = []
    result = training.train_experiment(
        _mlp_config("npz", path), tmp_path / "exp", on_event=events.append
    )
    assert len(result.written) == 2
    meta = release.read_experiment_meta(tmp_path / "exp")
    assert (meta.dataset, meta.index_order) == ("npz", "npz")
    assert (meta.num_train, meta.num_test, meta.image_shape) == (NUM_TRAIN, NUM_TEST, (28, 28, 1))
    recorded = meta.extra["source"]
    assert recorded["kind"] == "npz" and recorded["path"] == str(path)
    assert recorded["files"][0]["size"] == path.stat().st_size
    assert recorded["num_examples"] == {"train": NUM_TRAIN, "test": NUM_TEST}
    # Every later tool reads the same rows in the same order: the readers' source.
    assert _cross_check(tmp_path / "exp") == (2 * (NUM_TRAIN + NUM_TEST),) * 2
    # A second call trains nothing; other data in the same file is refused.
    again = training.train_experiment(_mlp_config("npz", path), tmp_path / "exp")
    assert not again.written and len(again.skipped) == 2
    x_train, y_train, x_test, y_test = fashion_arrays
    _write_xy(path, x_train, (y_train + 1) % 10, x_test, y_test)
    with pytest.raises(TrainingError, match="data source sha256"):
        training.train_experiment(_mlp_config("npz", path), tmp_path / "exp")


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x_train": np.zeros((4, 5, 5), np.uint8), "y_train": np.zeros(4, int)}, "no test"),
        (
            {
                "x_train": np.zeros((4, 5, 5), np.float32),
                "y_train": np.zeros(4, int),
                "x_test": np.zeros((2, 5, 5), np.uint8),
                "y_test": np.zeros(2, int),
            },
            "train images must be uint8",
        ),
        (
            {
                "x_train": np.zeros((4, 5, 5), np.uint8),
                "y_train": np.zeros((4, 1), int),
                "x_test": np.zeros((2, 5, 5), np.uint8),
                "y_test": np.zeros(2, int),
            },
            r"train labels must be integers \[N\]",
        ),
        (
            {
                "x_train": np.zeros((4, 5), np.uint8),
                "y_train": np.zeros(4, int),
                "x_test": np.zeros((2, 5), np.uint8),
                "y_test": np.zeros(2, int),
            },
            "must be",
        ),
        ({"x_train": np.zeros((4, 5, 5), np.uint8)}, "lacks the key `y_train`"),
        ({"pixels": np.zeros((4, 5, 5), np.uint8)}, "expected keys `x_train`"),
    ],
)
def test_npz_errors_name_the_file(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=message) as info:
        open_source("npz", path)
    assert str(path) in str(info.value)


def test_npz_needs_a_file_and_data_needs_a_name(tmp_path):
    with pytest.raises(TrainingError, match="needs data_dir to be a .npz file"):
        open_source("npz", tmp_path)
    with pytest.raises(TrainingError, match="dataset must name the data"):
        training.TrainingConfig(dataset="")


TINY_SHAPE, TINY_CLASSES = (8, 8, 3), 3


def _tiny_tfds(data_dir: Path, num_train: int = 48, num_test: int = 16) -> dict:
    """Prepares `tiny_images` (never registered with TFDS) in `data_dir`; returns its arrays."""
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(0)
    arrays = {
        split: (
            rng.integers(0, 256, (n, *TINY_SHAPE), dtype=np.uint8),
            rng.integers(0, TINY_CLASSES, n),
        )
        for split, n in (("train", num_train), ("test", num_test))
    }

    class TinyImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=TINY_SHAPE),
                        "label": tfds.features.ClassLabel(num_classes=TINY_CLASSES),
                    }
                ),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            del dl_manager  # nothing is downloaded
            return {split: self._generate_examples(split) for split in arrays}

        def _generate_examples(self, split):
            images, labels = arrays[split]
            for i in range(len(labels)):
                yield i, {"image": images[i], "label": int(labels[i])}

    TinyImages(data_dir=str(data_dir)).download_and_prepare()
    return arrays


def test_tfds_source_trains_end_to_end(tmp_path):
    arrays = _tiny_tfds(tmp_path / "tfds")
    config = _mlp_config("tiny_images", tmp_path / "tfds")
    result = training.train_experiment(config, tmp_path / "exp")
    assert len(result.written) == 2
    meta = release.read_experiment_meta(tmp_path / "exp")
    # Recorded with the version read: later tools read that one, whatever else is there.
    assert (meta.dataset, meta.index_order, meta.num_classes) == ("tiny_images:1.0.0", "tfds", 3)
    assert meta.image_shape == TINY_SHAPE
    recorded = meta.extra["source"]
    assert recorded["kind"] == "tfds"
    assert Path(recorded["files"][0]["path"]).name == "dataset_info.json"
    # Index order is TFDS order (TFDS shuffles on preparing): the same examples, and the
    # same order every later tool reads.
    train = datasets.get_source("tiny_images", tmp_path / "tfds").load_arrays("train")
    assert sorted(map(bytes, train.images)) == sorted(map(bytes, arrays["train"][0]))
    # demo.py, in a process that has never seen the builder: N out of N.
    completed = run_script("demo.py", f"--model_dir={result.written[0].path}", timeout=300)
    assert_demo_matches_all(completed, 48 + 16)
    json.dumps(recorded)  # the record is plain JSON


def test_an_unknown_tfds_name_is_a_short_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="cannot open TFDS dataset 'no_such_dataset'") as info:
        open_source("no_such_dataset", tmp_path)
    assert "prepared in that data_dir" in str(info.value) and len(str(info.value)) < 400
