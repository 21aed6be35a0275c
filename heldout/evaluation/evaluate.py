"""Re-evaluate a restored model and cross-check its correctness against a run's aux arrays.

    result = evaluate(model, source, "test", batch_size=500)   # correctness + index
    checks = cross_check(run, [result])                         # {"test": CrossCheck}

`evaluate` runs a `tf.function`-compiled prediction step over a prefetching `tf.data`
pipeline, so input preparation overlaps with the model; TensorFlow places the step on a GPU
when it sees one. Predictions stay on the device until the end of the split (no host sync
per batch).

`check_run` strings restore → evaluate → cross-check together for one run, which is what
`demo.py` prints. To check many runs, pass one `ModelCache`: it builds the model and traces
its evaluation step once per (architecture, class count, image shape) and only restores
weights per run (building and tracing cost far more than a small evaluation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from heldout import models
from heldout.datasets import DataSource
from heldout.errors import DatasetError, ModelError, UsageError
from heldout.models import checkpoints
from heldout.release.aux_arrays import AuxArrays

SPLITS = ("train", "test")
DEFAULT_BATCH_SIZE = 500


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Per-example results of one split, in the order the data source yielded them.

    Attributes:
      split: "train" or "test" (the split of the data source; "train" covers the release's
        `train` and `removed` examples).
      correctness: bool [N], prediction == label.
      index: int64 [N], position of each example in the full split (the source's order).
      predictions: int64 [N] argmax class, or None.
      labels: int64 [N], or None.
      logits: float32 [N, classes] (the same pass as `correctness`), or None.
    """

    split: str
    correctness: np.ndarray
    index: np.ndarray
    predictions: np.ndarray | None = None
    labels: np.ndarray | None = None
    logits: np.ndarray | None = None

    @property
    def num_examples(self) -> int:
        return int(self.index.size)

    @property
    def accuracy(self) -> float:
        return float(self.correctness.mean()) if self.correctness.size else float("nan")


@dataclasses.dataclass(frozen=True)
class CrossCheck:
    """Agreement of re-evaluated correctness with a run's stored correctness on one split.

    `split` is the release's name: "train" (examples the run trained on), "removed" (held
    out from training) or "test". `mismatched_indices` are positions in the full split.
    `not_evaluated` counts stored entries that the evaluation did not cover; `accuracy` is
    the re-evaluated accuracy on the compared examples.
    """

    split: str
    matches: int
    total: int
    mismatched_indices: np.ndarray
    not_evaluated: int = 0
    accuracy: float = float("nan")

    @property
    def all_match(self) -> bool:
        return self.matches == self.total and self.not_evaluated == 0

    @property
    def fraction(self) -> float:
        return self.matches / self.total if self.total else float("nan")


def _as_dataset(source_or_dataset, split: str, batch_size: int) -> tf.data.Dataset:
    if isinstance(source_or_dataset, tf.data.Dataset):
        return source_or_dataset
    if hasattr(source_or_dataset, "as_dataset"):
        return source_or_dataset.as_dataset(split, batch_size)
    raise TypeError(
        f"expected a heldout.datasets.DataSource or a tf.data.Dataset of batches, got "
        f"{type(source_or_dataset).__name__}"
    )


class Evaluator:
    """Predicts datasets with one model through compiled steps, reused across calls.

    A step is traced once per image shape (the batch dimension is left unknown, so the
    last, smaller batch does not trace again), so evaluating the train and then the test
    split of a run, or several sources, pays for tracing once.

    Args:
      model: called as `model(images, is_training=False)` -> logits.
      jit_compile: compile the step with XLA. None (default) leaves TensorFlow's graph
        optimizations (oneDNN fusions on CPU, cuDNN on GPU) without XLA.
    """

    def __init__(self, model, jit_compile: bool | None = None):
        self.model = model
        self.jit_compile = jit_compile
        self._steps: dict[tuple[int, ...], tf.types.experimental.PolymorphicFunction] = {}
        self.traces = 0  # how often a step was traced (Python runs only while tracing)

    def predict_step(self, image_shape: Sequence[int], with_logits: bool = False):
        """The compiled `float32 images [B, *image_shape] -> argmax class (int64)` step;
        `with_logits`: `-> (argmax, float32 logits)` from the same forward pass."""
        key = (*(int(d) for d in image_shape), with_logits)
        if key not in self._steps:
            model = self.model

            @tf.function(
                input_signature=[tf.TensorSpec([None, *key[:-1]], tf.float32)],
                jit_compile=self.jit_compile,
            )
            def predict(images):
                self.traces += 1
                logits = model(images, is_training=False)
                predicted = tf.argmax(logits, axis=-1, output_type=tf.int64)
                if with_logits:
                    return predicted, tf.cast(logits, tf.float32)
                return predicted

            self._steps[key] = predict
        return self._steps[key]

    def evaluate(
        self,
        source_or_dataset: DataSource | tf.data.Dataset,
        split: str = "test",
        batch_size: int = DEFAULT_BATCH_SIZE,
        keep_predictions: bool = True,
        keep_logits: bool = False,
    ) -> EvalResult:
        """See the module-level `evaluate`."""
        ds = _as_dataset(source_or_dataset, split, batch_size)
        spec = ds.element_spec
        missing = [k for k in ("image", "label", "index") if k not in spec]
        if missing:
            raise DatasetError(f"dataset batches lack {missing}; they have {sorted(spec)}")
        image_shape = spec["image"].shape[1:]
        if not image_shape.is_fully_defined():
            raise DatasetError(f"dataset images need a known shape, got {spec['image'].shape}")
        predict = self.predict_step(image_shape.as_list(), keep_logits)
        # Sources prefetch already; this is for plain datasets passed in.
        ds = ds.prefetch(tf.data.AUTOTUNE)

        predictions, labels, indices, logits = [], [], [], []
        for batch in ds:
            # Keep results as tensors: converting to numpy here would wait for each step
            # (on a GPU, steps are queued while the input pipeline prepares the next batch).
            out = predict(tf.cast(batch["image"], tf.float32))
            if keep_logits:
                out, batch_logits = out
                logits.append(batch_logits)
            predictions.append(out)
            labels.append(batch["label"])
            indices.append(batch["index"])
        if not indices:
            empty = np.zeros(0, np.int64)
            return EvalResult(split, np.zeros(0, bool), empty, empty, empty, None)
        pred = tf.concat(predictions, axis=0).numpy()
        label = tf.cast(tf.concat(labels, axis=0), tf.int64).numpy()
        index = tf.cast(tf.concat(indices, axis=0), tf.int64).numpy()
        correct = pred == label
        kept = tf.concat(logits, axis=0).numpy() if keep_logits else None
        if keep_predictions or keep_logits:  # margins need the labels beside the logits
            return EvalResult(split, correct, index, pred, label, kept)
        return EvalResult(split, correct, index)


def evaluate(
    model,
    source_or_dataset: DataSource | tf.data.Dataset,
    split: str = "test",
    batch_size: int = DEFAULT_BATCH_SIZE,
    keep_predictions: bool = True,
    jit_compile: bool | None = None,
    keep_logits: bool = False,
) -> EvalResult:
    """Predicts every example of `split` and returns its correctness by index.

    Args:
      model: called as `model(images, is_training=False)` -> logits.
      source_or_dataset: a DataSource (its `as_dataset(split, batch_size)` is used) or a
        `tf.data.Dataset` of batches {"image", "label", "index"} (then `split` and
        `batch_size` only label the result).
      split: "train" or "test" (as the source names them; ImageNet maps "test").
      batch_size: images per step. Larger batches amortize per-step overhead.
      keep_predictions: also return predicted classes and labels.
      jit_compile: compile the step with XLA (None: no XLA).
      keep_logits: also return the float32 logits of the same pass (and the labels).

    Returns:
      An `EvalResult`: the split's correctness in index order (and, when kept, the
      predicted classes and labels).

    Raises:
      DatasetError: the dataset's batches lack image, label or index, or its images have
        no known shape.

    Use an `Evaluator` to evaluate several splits with one model without tracing again.
    """
    return Evaluator(model, jit_compile=jit_compile).evaluate(
        source_or_dataset, split, batch_size, keep_predictions, keep_logits
    )


# ------------------------------------------------------------------------ cross-checking


def _compare(
    name: str,
    stored_index: np.ndarray,
    stored_correct: np.ndarray,
    evaluated: np.ndarray,
    covered: np.ndarray,
) -> CrossCheck:
    """Compares stored correctness with `evaluated` (full split, index order) where covered."""
    have = covered[stored_index]
    index = stored_index[have]
    agree = evaluated[index] == stored_correct[have]
    return CrossCheck(
        split=name,
        matches=int(agree.sum()),
        total=int(index.size),
        mismatched_indices=np.sort(index[~agree]),
        not_evaluated=int((~have).sum()),
        accuracy=float(evaluated[index].mean()) if index.size else float("nan"),
    )


def _full_split(result: EvalResult, size: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    if result.index.size and (result.index.min() < 0 or result.index.max() >= size):
        raise DatasetError(
            f"{source}: the evaluated {result.split} split has index values up to "
            f"{int(result.index.max())}, but the run's aux arrays cover {size} {result.split} "
            "examples: a different dataset (or dataset version) than the run's?"
        )
    correct = np.zeros(size, dtype=bool)
    covered = np.zeros(size, dtype=bool)
    correct[result.index] = result.correctness
    covered[result.index] = True
    return correct, covered


def cross_check(run_or_aux, results: EvalResult | Iterable[EvalResult]) -> dict[str, CrossCheck]:
    """Compares re-evaluated correctness with a run's `aux_arrays.npz`, by index.

    Args:
      run_or_aux: a `heldout.release.layout.Run` (its aux arrays are loaded) or its
        `AuxArrays`.
      results: one or more `EvalResult`s of the run's model (`evaluate`), on "train"
        and/or "test" ("validation" counts as test).

    Returns:
      Split name -> `CrossCheck`: a "train" result yields "train" and "removed" (the
      examples the run trained on and those held out), a "test" result yields "test".

    Raises:
      UsageError: a result of another split.
      DatasetError: a result whose indices exceed the run's split size (another dataset
        or dataset version than the run's).
      AuxArraysError: the run's aux arrays cannot be read.
    """
    aux: AuxArrays = run_or_aux if isinstance(run_or_aux, AuxArrays) else run_or_aux.load_aux()
    if isinstance(results, EvalResult):
        results = [results]
    checks: dict[str, CrossCheck] = {}
    for result in results:
        if result.split == "train":
            correct, covered = _full_split(result, aux.num_train, aux.source)
            checks["train"] = _compare(
                "train", aux.index_train, aux.correctness_train, correct, covered
            )
            checks["removed"] = _compare(
                "removed", aux.index_removed, aux.correctness_removed, correct, covered
            )
        elif result.split in ("test", "validation"):
            correct, covered = _full_split(result, aux.num_test, aux.source)
            checks["test"] = _compare(
                "test", aux.index_test, aux.correctness_test, correct, covered
            )
        else:
            raise UsageError(f"cannot cross-check split {result.split!r}; expected train or test")
    return checks


# --------------------------------------------------------------------- one run, end to end


@dataclasses.dataclass(frozen=True)
class RunCheck:
    """What re-evaluating one run found."""

    run_path: Path
    subset_ratio: float
    restore: checkpoints.RestoreInfo
    arch: str
    num_classes: int
    results: dict[str, EvalResult]
    checks: dict[str, CrossCheck]
    aux: AuxArrays

    @property
    def matches(self) -> int:
        return sum(c.matches for c in self.checks.values())

    @property
    def total(self) -> int:
        return sum(c.total + c.not_evaluated for c in self.checks.values())

    @property
    def all_match(self) -> bool:
        return all(c.all_match for c in self.checks.values())


@dataclasses.dataclass(frozen=True)
class CachedModel:
    """A built model with its restore map and its evaluator (traced steps), kept together."""

    arch: str
    num_classes: int
    image_shape: tuple[int, ...]
    target: checkpoints.RestoreTarget
    evaluator: Evaluator

    @property
    def model(self):
        return self.target.model


class ModelCache:
    """Models built once per (architecture, class count, image shape), restored per run.

    One per worker (process or thread that evaluates runs one after another): a model's
    variables are overwritten by every restore, so two evaluations must not share one at
    the same time. Restoring in place is exact: `checkpoints.RestoreTarget` assigns every
    variable of the model from each checkpoint (and refuses models with variables a
    checkpoint would not hold), so a run's result does not depend on the runs before it.

    The input pipelines of the last data source are kept too (`dataset`), so an
    in-memory split is turned into a tensor once per worker, not once per run.

    `builds` counts the models built, `traces` the evaluation steps traced (each is paid
    once per key, not once per run).
    """

    def __init__(self, jit_compile: bool | None = None):
        self.jit_compile = jit_compile
        self._models: dict[tuple, CachedModel] = {}
        self.builds = 0
        self._source = None  # the source whose datasets are kept (one at a time)
        self._datasets: dict[tuple[str, int], tf.data.Dataset] = {}

    def get(self, arch: str, num_classes: int, image_shape: Sequence[int]) -> CachedModel:
        """The model for this key, built (and its variables created) on first use.

        Raises:
          ModelError: unknown architecture or class count.
        """
        arch = models.canonical_arch(arch)
        shape = tuple(int(d) for d in image_shape)
        key = (arch, int(num_classes), shape)
        if key not in self._models:
            model = models.build_model(arch, int(num_classes))
            target = checkpoints.RestoreTarget(model, shape)
            evaluator = Evaluator(model, jit_compile=self.jit_compile)
            self._models[key] = CachedModel(arch, int(num_classes), shape, target, evaluator)
            self.builds += 1
        return self._models[key]

    def dataset(self, source: DataSource, split: str, batch_size: int) -> tf.data.Dataset:
        """`source.as_dataset(split, batch_size)`, made once and iterated again per run.

        Building the pipeline copies an in-memory split into a tensor (150 MB for the
        CIFAR training set): once per worker, not once per run. Kept for the last source
        only.
        """
        if source is not self._source:
            self._source, self._datasets = source, {}
        key = (split, int(batch_size))
        if key not in self._datasets:
            self._datasets[key] = _as_dataset(source, split, batch_size)
        return self._datasets[key]

    @property
    def traces(self) -> int:
        return sum(cached.evaluator.traces for cached in self._models.values())

    def __len__(self) -> int:
        return len(self._models)


def resolve_model(run, source: DataSource, arch=None, num_classes=None, meta=None):
    """(arch, num_classes, image_shape) a run is evaluated with.

    The architecture and class count come from `arch`/`num_classes`, else from `meta` (or
    the experiment folder's name), else the class count from the data source; the image
    shape from `meta`, else the source.

    Raises:
      ModelError: the architecture cannot be determined (the message says what to pass).
    """
    meta_or_name = meta if meta is not None else Path(run.experiment_dir).name
    try:
        arch, num_classes = models.arch_for_experiment(meta_or_name, arch, num_classes)
    except ModelError:
        # Nothing names the class count: the data source knows it.
        arch, num_classes = models.arch_for_experiment(
            meta_or_name, arch, num_classes or source.num_classes
        )
    image_shape = getattr(meta, "image_shape", None) or source.image_shape
    return arch, num_classes, tuple(int(d) for d in image_shape)


def check_run(
    run,
    source: DataSource,
    splits: Sequence[str] = SPLITS,
    arch: str | None = None,
    num_classes: int | None = None,
    meta=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    cache: ModelCache | None = None,
    keep_logits: bool = False,
) -> RunCheck:
    """Restores the run's checkpoint, evaluates `splits` and cross-checks them.

    Args:
      run: a `heldout.release.layout.Run` with a checkpoint.
      source: the data the run was evaluated on (with its trained-on labels:
        `heldout.datasets.relabeled.experiment_source`).
      splits: "train" and/or "test".
      arch, num_classes: override what `meta` (or the experiment name) says.
      meta: the experiment's `ExperimentMeta` (architecture, classes, image shape).
      batch_size: images per evaluation step.
      cache: a `ModelCache` to take the model from (built once, restored in place). None
        builds a fresh model for this call, which is right for one run and wasteful for
        many.
      keep_logits: keep each split's logits (and labels) in its result.

    Returns:
      The restore info, per-split results and cross-checks.

    Raises:
      ModelError, CheckpointError, DatasetError, AuxArraysError: the run cannot be
        evaluated as asked; the message names the file or option.
    """
    arch, num_classes, image_shape = resolve_model(run, source, arch, num_classes, meta)
    cache = cache if cache is not None else ModelCache()
    cached = cache.get(arch, num_classes, image_shape)
    aux = run.load_aux()
    info = cached.target.restore(run.path)
    results = {
        split: cached.evaluator.evaluate(
            cache.dataset(source, split, batch_size), split, batch_size, keep_logits=keep_logits
        )
        for split in splits
    }
    checks = cross_check(aux, list(results.values()))
    return RunCheck(
        run_path=Path(run.path),
        subset_ratio=float(run.subset_ratio),
        restore=info,
        arch=arch,
        num_classes=num_classes,
        results=results,
        checks=checks,
        aux=aux,
    )
