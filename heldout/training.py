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

Library code: returns values and reports progress through a callback; the command line is
`tools/train_heldout.py`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from heldout import label_noise, release
from heldout.aux_arrays import aux_from_predictions
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


class TrainingError(ValueError):
    """A configuration or output folder that cannot be trained as asked."""


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
    if path.is_file():
        corruption = label_noise.load_label_corruption(path)
        corruption.apply(clean_labels)  # checks it fits this dataset
        return corruption
    corruption = label_noise.corrupt_labels(
        clean_labels, config.label_corrupt_prob, num_classes, corruption_rng(config.seed)
    )
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
        trainer = _Trainer(config, data, experiment_dir, notify)
        for ratio in sorted({ratio for ratio, _ in pending}):
            run_ids = [run_id for r, run_id in pending if r == ratio]
            group_size = config.models_per_step if config.arch == "mlp" else 1
            for start in range(0, len(run_ids), group_size):
                written.extend(trainer.train_group(ratio, run_ids[start : start + group_size]))
    return TrainingResult(experiment_dir, tuple(written), tuple(finished))


# ------------------------------------------------------------------------- trainers


class _Trainer:
    """Holds the device-resident data and the compiled steps across groups of runs."""

    def __init__(
        self,
        config: TrainingConfig,
        data: TrainingData,
        experiment_dir: Path,
        notify: Callable[[Event], None],
    ):
        import tensorflow as tf

        self.tf = tf
        self.config = config
        self.data = data
        self.experiment_dir = experiment_dir
        self.notify = notify
        n = data.num_train
        self.images_flat = tf.constant(data.train_images.reshape(n, -1))
        self.labels = tf.constant(data.train_labels.astype(np.int32))
        val = min(config.val_examples, data.test_labels.size)
        self.val_images = tf.constant(data.test_images[:val].reshape(val, -1))
        self.val_labels = tf.constant(data.test_labels[:val].astype(np.int32))
        self._stacks = {}  # num_models -> StackedMLP (reused: keeps compiled functions)
        self._mlp_evaluator = None  # evaluation.Evaluator of the one evaluation MLP
        self._eval_datasets = {}  # split -> the source's batches, built once

    # -- MLPs, stacked ---------------------------------------------------------------------
    def _stack(self, num_models: int):
        from heldout import stacked_mlp

        if num_models not in self._stacks:
            sizes = (int(self.images_flat.shape[1]),) + stacked_mlp.DEFAULT_LAYER_SIZES[1:-1]
            self._stacks[num_models] = stacked_mlp.StackedMLP(
                num_models,
                sizes + (self.data.num_classes,),
                momentum=self.config.momentum,
                compute_dtype=getattr(self.tf, self.config.compute_dtype),
            )
        return self._stacks[num_models]

    def train_group(self, subset_ratio: float, run_ids: Sequence[int]) -> list[release.Run]:
        from heldout import stacked_mlp

        if self.config.arch != "mlp":
            return [self._train_single(subset_ratio, run_id) for run_id in run_ids]
        tf, config, n = self.tf, self.config, self.data.num_train
        rngs = [run_rngs(config.seed, subset_ratio, run_id) for run_id in run_ids]
        subsets = [run_subset(config.seed, subset_ratio, run_id, n) for run_id in run_ids]
        batch = min(config.batch_size, subsets[0].size)
        steps = math.ceil(subsets[0].size / batch)
        rates = learning_rates(config.learning_rate, steps * config.epochs, config.warmup_fraction)
        stack = self._stack(len(run_ids))
        sizes = stack.layer_sizes
        stack.set_params([stacked_mlp.init_params(r["init"], sizes) for r in rngs])
        for epoch in range(config.epochs):
            batch_index = np.stack(
                [epoch_batches(s, batch, r["shuffle"]) for s, r in zip(subsets, rngs, strict=True)],
                axis=1,
            )  # [steps, M, B]
            start = time.perf_counter()
            loss, correct = stack.train_epoch(
                self.images_flat,
                self.labels,
                tf.constant(batch_index),
                tf.constant(rates[epoch * steps : (epoch + 1) * steps]),
            )
            loss, correct = loss.numpy(), correct.numpy()
            seconds = time.perf_counter() - start
            val_correct = stack.count_correct(
                self.val_images, self.val_labels, tf.constant(1000)
            ).numpy()
            examples = steps * batch
            self.notify(
                EpochLog(
                    subset_ratio,
                    tuple(run_ids),
                    epoch + 1,
                    config.epochs,
                    loss / examples,
                    correct / examples,
                    val_correct / max(1, int(self.val_labels.shape[0])),
                    seconds,
                )
            )
        written = []
        for m, run_id in enumerate(run_ids):
            model = self._mlp_from(stack.get_params(m))
            written.append(
                self._write(
                    subset_ratio,
                    run_id,
                    model,
                    subsets[m],
                    rngs[m]["aux_order"],
                    steps * config.epochs,
                )
            )
        return written

    def _mlp_from(self, params):
        """The evaluation MLP (one, reused: its compiled step is traced once) with `params`."""
        from heldout import evaluation
        from heldout.models import build_model, ensure_variables

        if self._mlp_evaluator is None:
            model = build_model("mlp", self.data.num_classes)
            ensure_variables(model)
            self._mlp_evaluator = evaluation.Evaluator(model)
        model = self._mlp_evaluator.model
        layers = (model.hidden1, model.hidden2, model.logits)
        for layer, w, b in zip(layers, params.weights, params.biases, strict=True):
            layer.w.assign(w)
            layer.b.assign(b)
        return model

    # -- other architectures, one model at a time -----------------------------------------
    def _train_single(self, subset_ratio: float, run_id: int) -> release.Run:
        import sonnet as snt

        from heldout.models import build_model, ensure_variables

        tf, config, n = self.tf, self.config, self.data.num_train
        rngs = run_rngs(config.seed, subset_ratio, run_id)
        subset = run_subset(config.seed, subset_ratio, run_id, n)
        batch = min(config.batch_size, subset.size)
        steps = math.ceil(subset.size / batch)
        rates = learning_rates(config.learning_rate, steps * config.epochs, config.warmup_fraction)
        # Sonnet's initialisers draw from TensorFlow's global generator: seed it per run.
        tf.random.set_seed(int(rngs["init"].integers(2**31 - 1)))
        model = build_model(config.arch, self.data.num_classes)
        ensure_variables(model, tuple(self.data.train_images.shape[1:]))
        optimizer = snt.optimizers.Momentum(
            learning_rate=tf.Variable(0.0), momentum=config.momentum
        )
        images = tf.constant(self.data.train_images)

        @tf.function
        def step(index, lr):
            x = tf.cast(tf.gather(images, index), tf.float32) / 255.0
            y = tf.gather(self.labels, index)
            with tf.GradientTape() as tape:
                logits = model(x, is_training=True)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                )
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.learning_rate.assign(lr)
            optimizer.apply(grads, model.trainable_variables)
            hits = tf.reduce_sum(
                tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.int32)
            )
            return loss, hits

        val_x = (
            tf.cast(
                tf.reshape(self.val_images, (-1,) + self.data.train_images.shape[1:]), tf.float32
            )
            / 255.0
        )
        for epoch in range(config.epochs):
            batches = epoch_batches(subset, batch, rngs["shuffle"])
            start = time.perf_counter()
            loss_sum, hits_sum = 0.0, 0
            for s, index in enumerate(batches):
                loss, hits = step(tf.constant(index), tf.constant(rates[epoch * steps + s]))
                loss_sum += float(loss) * batch
                hits_sum += int(hits)
            seconds = time.perf_counter() - start
            predicted = tf.argmax(model(val_x, is_training=False), -1, output_type=tf.int32)
            val_acc = float(tf.reduce_mean(tf.cast(predicted == self.val_labels, tf.float32)))
            examples = steps * batch
            self.notify(
                EpochLog(
                    subset_ratio,
                    (run_id,),
                    epoch + 1,
                    config.epochs,
                    np.array([loss_sum / examples]),
                    np.array([hits_sum / examples]),
                    np.array([val_acc]),
                    seconds,
                )
            )
        return self._write(
            subset_ratio, run_id, model, subset, rngs["aux_order"], steps * config.epochs
        )

    # -- evaluation and writing ------------------------------------------------------------
    def _write(self, subset_ratio, run_id, model, subset, aux_rng, global_step) -> release.Run:
        from heldout import checkpoints, evaluation

        if self._mlp_evaluator is not None and model is self._mlp_evaluator.model:
            evaluator = self._mlp_evaluator
        else:
            evaluator = evaluation.Evaluator(model)
        correct_train = self._correctness(evaluator, "train")
        correct_test = self._correctness(evaluator, "test")
        mask = np.zeros(self.data.num_train, dtype=bool)
        mask[subset] = True
        aux = aux_from_predictions(mask, correct_train, correct_test, rng=aux_rng)
        run = release.write_run(
            self.experiment_dir,
            subset_ratio,
            run_id,
            aux,
            write_checkpoint=lambda folder: checkpoints.save(
                model, folder, epoch=self.config.epochs, global_step=global_step
            ),
        )
        self.notify(
            RunWritten(
                run,
                float(correct_train[mask].mean()),
                float(correct_train[~mask].mean()) if (~mask).any() else math.nan,
                float(correct_test.mean()),
            )
        )
        return run

    def _correctness(self, evaluator, split: str) -> np.ndarray:
        """bool [split size] in index order, through `heldout.evaluation` (see module doc)."""
        if split not in self._eval_datasets:
            # Built once and re-iterated for every run: the same batches demo.py evaluates.
            self._eval_datasets[split] = self.data.source.as_dataset(
                split, self.config.eval_batch_size
            )
        return evaluate_correctness(
            evaluator, self._eval_datasets[split], split, self.data.source.split_size(split)
        )


def evaluate_correctness(evaluator, dataset, split: str, size: int) -> np.ndarray:
    """bool [size] in index order: is the evaluator's model right on each example?

    `evaluator`: a `heldout.evaluation.Evaluator`, the code path `demo.py` re-evaluates
    runs with, so that the stored correctness and a later cross-check cannot disagree.
    `dataset`: the batches of a source's `as_dataset(split, batch_size)`.
    """
    result = evaluator.evaluate(dataset, split, keep_predictions=False)
    if result.index.size != size or np.unique(result.index).size != size:
        raise TrainingError(
            f"evaluating the {split} split gave {result.index.size} results for {size} examples"
        )
    correct = np.zeros(size, dtype=bool)
    correct[result.index] = result.correctness
    return correct
