"""Heldout training: many small models, each on a random subset, written as a release.

`train_experiment(config, output_dir)` trains `runs_per_ratio` models at each subset
ratio on MNIST-like data and writes each finished model as a run of the released layout
(`<output_dir>/<ratio>/<run_id>/{aux_arrays.npz, checkpoints/ckpt-<epoch>.*}`), so
`demo.py`, `tools/compute_scores.py` and the figures work on it as on the released
checkpoints.

* Speed: MLPs are trained `models_per_step` at a time with stacked weights
  (`heldout.stacked_mlp`); models of one subset ratio share the number of steps, so they
  are grouped by ratio. Other architectures (`small_inception`) train one at a time.
* Determinism: a run's subset, initialisation, batch order and the shuffled evaluation
  orders of its aux arrays all derive from `(seed, subset_ratio, run_id)`, never from
  which other runs it was trained with, so the same seed gives the same runs whichever
  runs were resumed or grouped together (bitwise on a given machine and thread count).
* Resuming: finished run folders are skipped; a run is written under a hidden temporary
  name and renamed when complete (`release.write_run`), and leftover temporary folders of
  an interrupted run are removed on the next call.
* Exactness: the correctness stored in a run's aux arrays comes from evaluating the very
  model that is saved in its checkpoint, unstacked, through `heldout.evaluation` -- the
  code path `demo.py` uses to re-evaluate it -- so the cross-check matches N out of N.
* Label noise: with `label_corrupt_prob > 0`, a fixed fraction of training labels is
  corrupted once for the experiment (`heldout.label_noise`); correctness of training
  examples is with respect to the labels the models were trained on.

This module decides what is trained; `heldout.trainer` holds the TensorFlow loops that
train and write the runs. Library code: returns values and reports progress through a
callback; the command line is `tools/train_heldout.py`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from heldout.errors import TrainingError  # noqa: F401 - re-exported
from heldout import label_noise, release
from heldout.datasets import DataSource, get_source
from heldout.datasets.idx import DEBIAN_FASHION_MNIST_DIR, IDX_FILES

DATASETS = ("fashion_mnist", "mnist")
ARCHS = ("mlp", "small_inception")
TRAINING_META_KEY = "training"  # ExperimentMeta.extra key holding the hyperparameters
# Hyperparameters that define an experiment: resuming with different values would mix
# runs of different experiments in one folder.
_DEFINING_FIELDS = (
    "dataset",
    "arch",
    "epochs",
    "batch_size",
    "learning_rate",
    "momentum",
    "warmup_fraction",
    "label_corrupt_prob",
    "seed",
    "compute_dtype",
)




@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides what is trained.

    Attributes:
      dataset: `fashion_mnist` (default) or `mnist`.
      data_dir: a folder of IDX files or a prepared TFDS data_dir. None: Debian's
        Fashion-MNIST IDX folder (MNIST has no default).
      subset_ratios: fractions of the training set each run trains on.
      runs_per_ratio: runs (models) per subset ratio; run ids 0..runs_per_ratio-1.
      epochs, batch_size, learning_rate, momentum: SGD with momentum; defaults are the
        paper's MNIST settings (Table 2: 20 epochs, batch 256, lr 0.1, momentum 0.9).
      warmup_fraction: linear warm-up over this fraction of the steps, then linear decay
        to 0 (the paper's schedule).
      models_per_step: MLPs trained simultaneously (speed only: results do not depend on it).
      label_corrupt_prob: fraction of training labels replaced by a random other class,
        once for the whole experiment.
      seed: root of every random choice.
      arch: `mlp` (stacked training) or `small_inception` (one model at a time).
      val_examples: test examples behind the per-epoch held-out accuracy (`Acc-val`); the
        first ones of the test split. Kept small: it is only a progress signal.
      eval_batch_size: batch size of the final evaluation that fills the aux arrays.
      compute_dtype: `float32`, or `bfloat16` for the MLP's matrix products.
    """

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    subset_ratios: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    runs_per_ratio: int = 16
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 0.1
    momentum: float = 0.9
    warmup_fraction: float = 0.15
    models_per_step: int = 32
    label_corrupt_prob: float = 0.0
    seed: int = 0
    arch: str = "mlp"
    val_examples: int = 1000
    eval_batch_size: int = 500  # demo.py's default (heldout.evaluation.DEFAULT_BATCH_SIZE)
    compute_dtype: str = "float32"

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise TrainingError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.arch not in ARCHS:
            raise TrainingError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if not self.subset_ratios:
            raise TrainingError("subset_ratios is empty: give at least one ratio in (0, 1]")
        for ratio in self.subset_ratios:
            if not 0.0 < ratio <= 1.0:
                raise TrainingError(f"subset ratios must lie in (0, 1], got {ratio}")
        for name in (
            "runs_per_ratio",
            "epochs",
            "batch_size",
            "models_per_step",
            "eval_batch_size",
        ):
            if int(getattr(self, name)) < 1:
                raise TrainingError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise TrainingError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise TrainingError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0.0 <= self.label_corrupt_prob < 1.0:
            raise TrainingError(
                f"label_corrupt_prob must be in [0, 1), got {self.label_corrupt_prob}"
            )
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise TrainingError(
                f"compute_dtype must be float32 or bfloat16, got {self.compute_dtype!r}"
            )

    def defining(self) -> dict:
        """The hyperparameters recorded in the experiment and checked when resuming."""
        return {name: getattr(self, name) for name in _DEFINING_FIELDS}


def default_config() -> TrainingConfig:
    """The embedded default experiment (`tools/run_default.py`): small enough for a CPU.

    Fashion-MNIST from Debian's IDX files; 3 subset ratios x 32 runs x 6 epochs (the
    paper's 20 epochs gain about 1 point of test accuracy, 88% vs 87%, for 3x the time).
    0.7 is among the ratios because memorization and influence are scored there, as in
    the release. About 5 minutes on 2 CPU cores.
    """
    return TrainingConfig(subset_ratios=(0.3, 0.5, 0.7), runs_per_ratio=32, epochs=6)


# ----------------------------------------------------------------------------- events


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """Sent first: what will be trained and what is already there."""

    experiment_dir: Path
    pending: tuple[tuple[float, int], ...]  # (subset_ratio, run_id) to train
    finished: tuple[tuple[float, int], ...]  # already written, skipped
    epochs: int


@dataclasses.dataclass(frozen=True)
class EpochLog:
    """Sent after each epoch of a group of models trained together (arrays per model)."""

    subset_ratio: float
    run_ids: tuple[int, ...]
    epoch: int  # 1-based
    epochs: int
    loss: np.ndarray  # mean training loss over the epoch
    acc_train: np.ndarray  # accuracy on the epoch's training batches ("Acc-tr")
    acc_val: np.ndarray  # accuracy on the first val_examples test examples ("Acc-val")
    seconds: float  # wall time of the epoch's training steps


@dataclasses.dataclass(frozen=True)
class RunWritten:
    """Sent when a run folder has been written."""

    run: release.Run
    train_accuracy: float  # on its own training subset (w.r.t. the trained-on labels)
    heldout_accuracy: float  # on the training examples it did not see
    test_accuracy: float


Event = TrainingPlan | EpochLog | RunWritten


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    experiment_dir: Path
    written: tuple[release.Run, ...]
    skipped: tuple[tuple[float, int], ...]


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The dataset in memory, in the experiment's index order.

    `train_labels` are the labels the models train on (corrupted where the experiment
    says so); `source` serves the same labels for evaluation.
    """

    source: DataSource
    source_name: str
    data_dir: str
    index_order: str
    num_classes: int
    train_images: np.ndarray  # uint8 [N, 28, 28, 1]
    train_labels: np.ndarray  # int64 [N], trained-on labels
    test_images: np.ndarray
    test_labels: np.ndarray
    corruption: label_noise.LabelCorruption | None

    @property
    def num_train(self) -> int:
        return int(self.train_labels.size)


def _is_idx_folder(path: str | os.PathLike) -> bool:
    folder = Path(path)
    stem = IDX_FILES["train"][0]
    return (folder / stem).is_file() or (folder / (stem + ".gz")).is_file()


def open_source(
    dataset: str, data_dir: str | os.PathLike | None
) -> tuple[DataSource, str, str, str]:
    """(source, source name, index order, data_dir) for `--dataset` and `--data_dir`.

    A folder holding IDX files is read in the files' order (`<dataset>_idx`, index order
    `idx`); anything else is taken as a prepared TFDS data_dir (TFDS order).
    """
    if dataset not in DATASETS:
        raise TrainingError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if data_dir is None:
        if dataset != "fashion_mnist":
            raise TrainingError(
                f"{dataset} has no default data: pass --data_dir, a folder of IDX files "
                "(train-images-idx3-ubyte.gz, ...) or a prepared TFDS data_dir"
            )
        data_dir = DEBIAN_FASHION_MNIST_DIR
        if not _is_idx_folder(data_dir):
            raise TrainingError(
                f"{data_dir}: Debian's Fashion-MNIST files are not installed (run setup.sh, "
                "or `apt-get install dataset-fashion-mnist`), or pass --data_dir"
            )
    data_dir = str(data_dir)
    if _is_idx_folder(data_dir):
        name, order = f"{dataset}_idx", "idx"
    else:
        name, order = dataset, "tfds"
    return get_source(name, data_dir), name, order, data_dir


def load_training_data(
    config: TrainingConfig,
    corruption: label_noise.LabelCorruption | None = None,
    opened: tuple[DataSource, str, str, str] | None = None,
) -> TrainingData:
    """Loads both splits into memory and applies `corruption` to the training labels.

    `opened`: what `open_source` returned for this config, to avoid opening it twice.
    """
    source, name, order, data_dir = opened or open_source(config.dataset, config.data_dir)
    train = source.load_arrays("train")
    test = source.load_arrays("test")
    labels = train.labels if corruption is None else corruption.apply(train.labels)
    eval_source = source if corruption is None else label_noise.RelabeledSource(source, corruption)
    return TrainingData(
        source=eval_source,
        source_name=name,
        data_dir=data_dir,
        index_order=order,
        num_classes=source.num_classes,
        train_images=train.images,
        train_labels=labels,
        test_images=test.images,
        test_labels=test.labels,
        corruption=corruption,
    )


# ------------------------------------------------------------------------ randomness


def _ratio_key(subset_ratio: float) -> int:
    return int(round(subset_ratio * 1_000_000))


def run_rngs(seed: int, subset_ratio: float, run_id: int) -> dict[str, np.random.Generator]:
    """Independent generators of one run, derived from (seed, subset ratio, run id) only."""
    streams = np.random.SeedSequence([int(seed), _ratio_key(subset_ratio), int(run_id)]).spawn(4)
    names = ("subset", "init", "shuffle", "aux_order")
    return {name: np.random.default_rng(s) for name, s in zip(names, streams, strict=True)}


def subset_size(subset_ratio: float, num_train: int) -> int:
    return max(1, int(round(subset_ratio * num_train)))


def run_subset(seed: int, subset_ratio: float, run_id: int, num_train: int) -> np.ndarray:
    """Sorted int64 indices of the training examples run `run_id` trains on."""
    rng = run_rngs(seed, subset_ratio, run_id)["subset"]
    chosen = rng.permutation(num_train)[: subset_size(subset_ratio, num_train)]
    return np.sort(chosen).astype(np.int64)


def corruption_rng(seed: int) -> np.random.Generator:
    """The generator of the experiment-wide label corruption (independent of every run)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0x1AB3_1005]))


def learning_rates(base: float, total_steps: int, warmup_fraction: float) -> np.ndarray:
    """float32 [total_steps]: linear warm-up to `base`, then linear decay towards 0."""
    steps = np.arange(total_steps, dtype=np.float64)
    warmup = min(total_steps, max(1, int(round(warmup_fraction * total_steps))))
    rates = np.where(
        steps < warmup,
        base * (steps + 1) / warmup,
        base * (total_steps - steps) / max(1, total_steps - warmup),
    )
    return rates.astype(np.float32)


def epoch_batches(subset: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """int32 [steps, batch_size]: one shuffled pass over `subset`.

    Every example appears once; the last batch is filled up with the first examples of
    the same shuffled order, so all batches (and all models of a group) have one shape.
    """
    order = subset[rng.permutation(subset.size)]
    steps = math.ceil(subset.size / batch_size)
    padded = np.resize(order, steps * batch_size)  # repeats from the start to fill up
    return padded.reshape(steps, batch_size).astype(np.int32)


# ------------------------------------------------------------------------ experiment


def _scan_runs(experiment_dir: Path, config: TrainingConfig):
    finished, pending = [], []
    for ratio in sorted(set(config.subset_ratios)):
        ratio_dir = experiment_dir / release.ratio_dir_name(ratio)
        for run_id in range(config.runs_per_ratio):
            run_dir = ratio_dir / str(run_id)
            done = (run_dir / release.AUX_ARRAYS_FILE).is_file()
            (finished if done else pending).append((ratio, run_id))
    return finished, pending


def remove_stale_temporaries(experiment_dir: Path) -> list[Path]:
    """Deletes hidden `.<run_id>.*.tmp` folders that an interrupted `write_run` left."""
    removed = []
    if not experiment_dir.is_dir():
        return removed
    for ratio_dir in experiment_dir.iterdir():
        if not ratio_dir.is_dir() or ratio_dir.name.startswith("."):
            continue
        for child in ratio_dir.iterdir():
            if child.name.startswith(".") and child.name.endswith(".tmp") and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def _check_existing_meta(experiment_dir: Path, config: TrainingConfig, source_name: str):
    meta_path = experiment_dir / release.EXPERIMENT_META_FILE
    if not meta_path.is_file():
        return None
    meta = release.read_experiment_meta(experiment_dir)
    recorded = meta.extra.get(TRAINING_META_KEY)
    if recorded is None:
        raise TrainingError(
            f"{experiment_dir}: holds an experiment not written by this trainer "
            f"({release.EXPERIMENT_META_FILE} has no {TRAINING_META_KEY!r} record); choose "
            "another --output_dir"
        )
    wanted = config.defining()
    differ = [
        f"{key}: recorded {recorded.get(key)!r}, asked {value!r}"
        for key, value in wanted.items()
        if recorded.get(key) != value
    ]
    if meta.dataset != source_name:
        differ.append(f"data source: recorded {meta.dataset!r}, asked {source_name!r}")
    if differ:
        raise TrainingError(
            f"{experiment_dir}: already holds runs trained with other settings; resuming "
            "would mix two experiments. Differences: " + "; ".join(differ)
        )
    return meta


def _prepare_corruption(experiment_dir: Path, config: TrainingConfig, clean_labels, num_classes):
    """Loads the experiment's label corruption, creating and recording it the first time."""
    if config.label_corrupt_prob == 0:
        return None
    path = experiment_dir / label_noise.LABEL_CORRUPTION_FILE
    # Deterministic in (seed, prob, labels): recomputed and compared, so that a record left
    # by an interrupted call with other settings (before the meta file existed) is caught.
    corruption = label_noise.corrupt_labels(
        clean_labels, config.label_corrupt_prob, num_classes, corruption_rng(config.seed)
    )
    if path.is_file():
        recorded = label_noise.load_label_corruption(path)
        same = all(
            np.array_equal(getattr(recorded, key), getattr(corruption, key))
            for key in ("indices", "original_labels", "new_labels")
        )
        if not same:
            raise TrainingError(
                f"{path}: records a label corruption ({recorded.num_corrupted} labels) other "
                f"than --label_corrupt_prob={config.label_corrupt_prob} with --seed="
                f"{config.seed} gives ({corruption.num_corrupted} labels); it belongs to "
                "another experiment: choose another --output_dir"
            )
        return recorded
    label_noise.save_label_corruption(path, corruption)
    return corruption


def experiment_meta(
    experiment_dir: Path,
    config: TrainingConfig,
    data: TrainingData,
    previous: release.ExperimentMeta | None,
) -> release.ExperimentMeta:
    ratios = set(config.subset_ratios)
    runs = config.runs_per_ratio
    if previous is not None:
        ratios |= set(previous.extra.get("subset_ratios", []))
        runs = max(runs, int(previous.extra.get("runs_per_ratio", 0)))
    corruption_file = label_noise.LABEL_CORRUPTION_FILE if data.corruption is not None else None
    return release.ExperimentMeta(
        name=experiment_dir.name,
        arch=config.arch,
        num_classes=data.num_classes,
        dataset=data.source_name,
        index_order=data.index_order,
        image_shape=tuple(int(d) for d in data.train_images.shape[1:]),
        extra={
            "data_dir": data.data_dir,
            "seed": config.seed,
            "subset_ratios": sorted(ratios),
            "runs_per_ratio": runs,
            "label_corrupt_prob": config.label_corrupt_prob,
            label_noise.META_KEY: corruption_file,
            TRAINING_META_KEY: config.defining(),
            "trainer": "heldout.training",
        },
    )


def train_experiment(
    config: TrainingConfig,
    output_dir: str | os.PathLike,
    on_event: Callable[[Event], None] | None = None,
) -> TrainingResult:
    """Trains every run of `config` not yet in `output_dir` and writes it there.

    Calling it again with the same config trains nothing; an interrupted call leaves only
    complete run folders (and hidden temporaries that the next call removes). Raises
    TrainingError when `output_dir` holds an experiment with other defining settings.
    """
    notify = on_event or (lambda event: None)
    experiment_dir = Path(output_dir)
    opened = open_source(config.dataset, config.data_dir)
    source, source_name = opened[0], opened[1]
    previous = _check_existing_meta(experiment_dir, config, source_name)
    experiment_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(experiment_dir)

    clean = source.load_arrays("train")
    corruption = _prepare_corruption(experiment_dir, config, clean.labels, source.num_classes)
    data = load_training_data(config, corruption, opened)
    release.write_experiment_meta(
        experiment_dir, experiment_meta(experiment_dir, config, data, previous)
    )

    finished, pending = _scan_runs(experiment_dir, config)
    notify(TrainingPlan(experiment_dir, tuple(pending), tuple(finished), config.epochs))
    written = []
    if pending:
        # Imported here: the loops need TensorFlow, the rest of this module does not.
        from heldout.trainer import Trainer

        trainer = Trainer(config, data, experiment_dir, notify)
        for ratio in sorted({ratio for ratio, _ in pending}):
            run_ids = [run_id for r, run_id in pending if r == ratio]
            group_size = config.models_per_step if config.arch == "mlp" else 1
            for start in range(0, len(run_ids), group_size):
                written.extend(trainer.train_group(ratio, run_ids[start : start + group_size]))
    return TrainingResult(experiment_dir, tuple(written), tuple(finished))


def __getattr__(name: str):
    # `evaluate_correctness` moved to `heldout.trainer` (TensorFlow), which is imported
    # only when asked for, so that importing this module stays free of TensorFlow.
    if name == "evaluate_correctness":
        from heldout import trainer

        return trainer.evaluate_correctness
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
