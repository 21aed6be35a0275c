"""Minimum-norm kernel interpolation with a Gaussian (RBF) kernel, solved in place.

Zhang et al. (2017) fit the training set exactly with the minimum-norm interpolant of a
kernel: solve `K alpha = Y` (one-hot labels) and predict `argmax_c K(x, X) alpha`. K is
built in place and factored by the blocked Cholesky of `heldout.kernels.cholesky`; the
solution is refined until its relative residual is below a stated tolerance.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np

from heldout._core.system import memory_available
from heldout.errors import HeldoutError
from heldout.kernels import cholesky
from heldout.kernels.rbf import (
    DEFAULT_BLOCK_SIZE,
    centred,
    flatten_images,
    kernel_lower,
    kernel_times,
    symmetric_kernel_times,
)

DEFAULT_GAMMA = 0.02  # Zhang et al.'s FAQ, on pixels in [0, 1]
DTYPES = ("float32", "float64")
DEFAULT_TOLERANCE = 1e-6  # relative residual ||K alpha - Y|| / ||Y|| to reach
DEFAULT_MAX_REFINE_STEPS = 6  # refinement passes before the system counts as singular


class KernelError(HeldoutError, ValueError):
    """A kernel interpolation that cannot be set up as asked (gamma, sizes, memory).

    (To be moved into `heldout.errors` with the rest of the hierarchy.)
    """


class SingularKernelError(KernelError):
    """The kernel system is numerically singular at the chosen precision; says what to change."""


@dataclasses.dataclass(frozen=True)
class Stage:
    """Sent to `on_stage` when a step of the solve is done (the library never prints)."""

    name: str  # "kernel", "cholesky", "condition", "solve", "residual", "refine"
    seconds: float
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class SolveOptions:
    """How the kernel system is built and solved, for `solve_interpolant` and
    `interpolate_dataset` (the `heldout kernel-interpolation` flags bear the same names).

    Attributes:
      gamma: K(x, x') = exp(-gamma ||x - x'||^2); default 0.02 (Zhang et al.'s FAQ).
      dtype: float32 (default; n = 60 000 needs 14.4 GB) or float64 (twice that).
      jitter: ridge added to K's diagonal; 0 (default) for the exact interpolant.
      tolerance: the relative residual `||K alpha - Y|| / ||Y||` to reach; default 1e-6,
        far below what changes a prediction (a training example is misclassified only
        when its residual row is about 0.5).
      max_refine_steps: rounds of iterative refinement allowed to reach `tolerance`
        (each costs one kernel recomputation).
      block_size: columns per block of kernel computation.
    """

    gamma: float = DEFAULT_GAMMA
    dtype: str = "float32"
    jitter: float = 0.0
    tolerance: float = DEFAULT_TOLERANCE
    max_refine_steps: int = DEFAULT_MAX_REFINE_STEPS
    block_size: int = DEFAULT_BLOCK_SIZE


@dataclasses.dataclass(frozen=True)
class KernelInterpolant:
    """A solved system: the coefficients, and what they are a solution of.

    Attributes:
      coefficients: alpha, `[n, C]` in `dtype`.
      train_images: the centred, flattened training images it interpolates (float32
        or float64 `[n, D]`); `mean_image` was subtracted from them.
      gamma, dtype, jitter: the kernel, the precision, the ridge (0: exact interpolant).
      relative_residual: `||K alpha - Y|| / ||Y||` after the last refinement step.
      residuals: the same before each refinement step, then after the last.
      train_scores: `K alpha` `[n, C]` (float64), from the last residual pass: the
        training predictions are its argmax.
      seconds: wall time of each stage.
    """

    coefficients: np.ndarray
    train_images: np.ndarray
    mean_image: np.ndarray
    gamma: float
    dtype: str
    jitter: float
    relative_residual: float
    residuals: tuple[float, ...]
    train_scores: np.ndarray
    seconds: dict[str, float]

    @property
    def num_train(self) -> int:
        return int(self.coefficients.shape[0])

    def train_predictions(self) -> np.ndarray:
        return np.argmax(self.train_scores, axis=1)

    def scores(self, images: np.ndarray, block_size: int = DEFAULT_BLOCK_SIZE) -> np.ndarray:
        """`K(images, X) alpha`, float64 `[m, C]`, for raw images (same scaling as training)."""
        x = centred(flatten_images(images, self.dtype), self.mean_image)
        coefficients = self.coefficients.astype(np.float64)
        return kernel_times(x, self.train_images, coefficients, self.gamma, block_size)

    def predict(self, images: np.ndarray, block_size: int = DEFAULT_BLOCK_SIZE) -> np.ndarray:
        """int64 `[m]`: the class with the largest interpolated score."""
        return np.argmax(self.scores(images, block_size), axis=1)


def _check_gamma(gamma: float) -> None:
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
        raise KernelError(
            f"gamma must be a positive number (K = exp(-gamma ||x - x'||^2)), got {gamma!r}"
        )


def _check_inputs(x, targets, options: SolveOptions) -> None:
    dtype, jitter, tolerance = options.dtype, options.jitter, options.tolerance
    max_refine_steps = options.max_refine_steps
    _check_gamma(options.gamma)
    if dtype not in DTYPES:
        raise KernelError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if not (math.isfinite(jitter) and jitter >= 0):
        raise KernelError(f"jitter must be at least 0, got {jitter!r}")
    if not 0 < tolerance < 1:
        raise KernelError(f"tolerance must be in (0, 1), got {tolerance!r}")
    if max_refine_steps < 0:
        raise KernelError(f"max_refine_steps must be at least 0, got {max_refine_steps}")
    if x.ndim != 2 or x.shape[0] < 1:
        raise KernelError(f"need at least one training image, got an array of shape {x.shape}")
    if targets.ndim != 2 or targets.shape[0] != x.shape[0]:
        raise KernelError(
            f"{x.shape[0]} training images but targets of shape {targets.shape} (want [n, C])"
        )


def _check_memory(n: int, dtype: str) -> int:
    needed = n * n * np.dtype(dtype).itemsize
    available = memory_available()
    if available is not None and needed > available:
        raise KernelError(
            f"the {n}x{n} {dtype} kernel matrix needs {_size(needed)} but "
            f"{_size(available)} of memory are available; use fewer training examples"
            + (" or float32" if dtype == "float64" else "")
        )
    return needed


def solve_interpolant(
    train_images: np.ndarray,
    targets: np.ndarray,
    options: SolveOptions = SolveOptions(),
    on_stage: Callable[[Stage], None] | None = None,
) -> KernelInterpolant:
    """Solves `K alpha = targets` for the RBF kernel of `train_images`, in place (see above).

    Args:
      train_images: uint8 `[n, H, W, C]` (scaled to [0, 1]) or float `[n, d]`.
      targets: `[n, C]`, usually one-hot labels (`one_hot`).
      options: the kernel, precision, ridge, tolerance, refinement steps and block size.
      on_stage: receives a `Stage` after each step.

    Returns:
      The interpolant, with its residuals.

    Raises:
      KernelError: gamma <= 0, an unknown dtype, a negative jitter, mismatched sizes, a
        matrix that does not fit in the available memory, or a residual still above
        `tolerance` (though decreasing) after `max_refine_steps`.
      SingularKernelError: K is numerically singular at `dtype`: the factorization fails,
        or refinement does not reduce the residual (the message says what to change).
    """
    notify = on_stage or (lambda stage: None)
    gamma, dtype, jitter = options.gamma, options.dtype, options.jitter
    tolerance, max_refine_steps = options.tolerance, options.max_refine_steps
    block_size = options.block_size
    targets = np.asarray(targets)
    if train_images.ndim == 2:
        x = np.array(train_images, dtype=dtype, copy=True)  # centred in place below
    else:
        x = flatten_images(train_images, dtype)
    _check_inputs(x, targets, options)
    n = x.shape[0]
    needed = _check_memory(n, dtype)
    mean = x.mean(axis=0, dtype=np.float64).astype(dtype)
    x = centred(x, mean)
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    kernel = kernel_lower(x, gamma, jitter, block_size)
    seconds["kernel"] = time.perf_counter() - start
    notify(Stage("kernel", seconds["kernel"], f"{n}x{n} {dtype}, {_size(needed)}"))

    start = time.perf_counter()
    try:
        factor = cholesky.cholesky_lower_in_place(kernel, block_size)
    except cholesky.NotPositiveDefinite as error:
        raise _singular(
            n, dtype, jitter, f"the Cholesky factorization failed at pivot {error.pivot}"
        ) from None
    seconds["cholesky"] = time.perf_counter() - start
    del kernel  # the same memory, now holding L
    rate = n**3 / 3 / max(seconds["cholesky"], 1e-9) / 1e9
    notify(Stage("cholesky", seconds["cholesky"], f"{rate:.0f} GFLOP/s"))

    def solve(right_hand_side: np.ndarray) -> np.ndarray:
        return cholesky.cholesky_solve(factor, right_hand_side, block_size).astype(np.float64)

    y = np.asarray(targets, dtype=np.float64)
    y_norm = float(np.linalg.norm(y)) or 1.0
    start = time.perf_counter()
    coefficients = solve(y)
    seconds["solve"] = time.perf_counter() - start
    notify(Stage("solve", seconds["solve"]))

    residuals: list[float] = []
    seconds["residual"] = 0.0
    while True:
        start = time.perf_counter()
        k_alpha = symmetric_kernel_times(x, coefficients, gamma, block_size)
        if jitter:
            k_alpha += jitter * coefficients  # the system solved is K + jitter I
        residual = y - k_alpha
        residuals.append(float(np.linalg.norm(residual)) / y_norm)
        elapsed = time.perf_counter() - start
        seconds["residual"] += elapsed
        notify(Stage("residual", elapsed, f"{residuals[-1]:.3e}"))
        if residuals[-1] <= tolerance:
            break
        if len(residuals) > 1 and residuals[-1] > 0.5 * residuals[-2]:
            raise _singular(
                n, dtype, jitter, "iterative refinement does not reduce the residual "
                "||K alpha - Y|| / ||Y|| (" + ", ".join(f"{r:.2e}" for r in residuals) + ")",
            )  # fmt: skip
        if len(residuals) > max_refine_steps:
            raise KernelError(
                f"the residual ||K alpha - Y|| / ||Y|| is {residuals[-1]:.2e} after "
                f"{max_refine_steps} refinement steps, above the tolerance {tolerance:g}; "
                "allow more steps (max_refine_steps) or a larger tolerance, or solve a better "
                "conditioned system (dtype float64, jitter) (residuals: "
                + ", ".join(f"{r:.2e}" for r in residuals) + ")"
            )  # fmt: skip
        coefficients += solve(residual)
    return KernelInterpolant(
        coefficients=coefficients.astype(dtype),
        train_images=x,
        mean_image=mean,
        gamma=float(gamma),
        dtype=dtype,
        jitter=float(jitter),
        relative_residual=residuals[-1],
        residuals=tuple(residuals),
        train_scores=k_alpha,
        seconds=seconds,
    )


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1e9:.1f} GB" if num_bytes >= 1e8 else f"{num_bytes / 1e6:.2g} MB"


def _singular(n: int, dtype: str, jitter: float, why: str) -> SingularKernelError:
    advice = []
    if dtype == "float32":
        advice.append(
            f"float64 (dtype float64; {_size(8 * n * n)} for n = {n}: a smaller "
            "num_train where that does not fit)"
        )
    advice.append(
        f"a ridge (jitter, e.g. {max(10 * jitter, 1e-6):g}: solves (K + jitter I) alpha = Y, "
        "no longer an exact interpolant)"
    )
    advice.append("or a larger gamma (a narrower kernel is better conditioned)")
    return SingularKernelError(
        f"the {n}x{n} kernel matrix is numerically singular in {dtype}"
        + (f" with jitter {jitter:g}" if jitter else "")
        + f": {why}. Use "
        + ", ".join(advice)
    )


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """float32 `[n, num_classes]` targets of the interpolation."""
    labels = np.asarray(labels, dtype=np.int64)
    targets = np.zeros((labels.size, num_classes), dtype=np.float32)
    targets[np.arange(labels.size), labels] = 1.0
    return targets


# ------------------------------------------------------------------ on a dataset


@dataclasses.dataclass(frozen=True)
class KernelRun:
    """One interpolation of an MNIST-like training set, and what it is a result of.

    `train_labels` are the labels interpolated (corrupted where asked); test labels are
    the dataset's. Errors are fractions.
    """

    dataset: str  # the source name (e.g. fashion_mnist_idx)
    data_dir: str  # absolute
    index_order: str
    label_corrupt_prob: float
    seed: int
    interpolant: KernelInterpolant
    train_labels: np.ndarray
    train_predictions: np.ndarray
    test_labels: np.ndarray
    test_predictions: np.ndarray
    labels_changed: int  # training labels that differ from the dataset's
    predict_seconds: float

    @property
    def train_error(self) -> float:
        return float(np.mean(self.train_predictions != self.train_labels))

    @property
    def test_error(self) -> float:
        return float(np.mean(self.test_predictions != self.test_labels))

    def arrays(self, coefficients: bool = False) -> dict[str, np.ndarray]:
        """What `kernel_interpolation --output` writes (no pickles: strings as unicode)."""
        fit = self.interpolant
        arrays = {
            "test_predictions": self.test_predictions.astype(np.int64),
            "test_labels": self.test_labels.astype(np.int64),
            "train_predictions": self.train_predictions.astype(np.int64),
            "train_labels": self.train_labels.astype(np.int64),
            "test_error": np.float64(self.test_error),
            "train_error": np.float64(self.train_error),
            "relative_residual": np.float64(fit.relative_residual),
            "residuals": np.asarray(fit.residuals, dtype=np.float64),
            "gamma": np.float64(fit.gamma),
            "dtype": np.str_(fit.dtype),
            "jitter": np.float64(fit.jitter),
            "num_train": np.int64(fit.num_train),
            "num_test": np.int64(self.test_labels.size),
            "label_corrupt_prob": np.float64(self.label_corrupt_prob),
            "labels_changed": np.int64(self.labels_changed),
            "seed": np.int64(self.seed),
            "dataset": np.str_(self.dataset),
            "data_dir": np.str_(self.data_dir),
            "index_order": np.str_(self.index_order),
        }
        for stage, seconds in fit.seconds.items():
            arrays[f"seconds_{stage}"] = np.float64(seconds)
        arrays["seconds_predict"] = np.float64(self.predict_seconds)
        if coefficients:
            arrays["coefficients"] = fit.coefficients
        return arrays


def interpolate_dataset(
    dataset: str = "fashion_mnist",
    data_dir: str | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    label_corrupt_prob: float = 0.0,
    seed: int = 0,
    options: SolveOptions = SolveOptions(),
    on_stage: Callable[[Stage], None] | None = None,
) -> KernelRun:
    """Interpolates the first `num_train` training examples and predicts the test split.

    The data are read as `tools/train_heldout.py` reads them (`--dataset`, `--data_dir`),
    and labels are corrupted as a heldout experiment with the same `label_corrupt_prob`
    and `seed` corrupts them (over the whole training split, before taking the first
    `num_train`), so both see the same random labels.

    Args:
      dataset, data_dir: as `heldout.training.data.open_source`.
      options, on_stage: as `solve_interpolant`.
      num_train: the first examples of the training split to interpolate (None: all).
      num_test: the first test examples to predict (None: all).
      label_corrupt_prob: `heldout.release.label_corruption.corrupt_labels`; 1.0: every
        label redrawn uniformly (random labels).
      seed: the corruption's seed (`heldout.training.plan.corruption_rng`).

    Returns:
      The predictions, errors and the interpolant.

    Raises:
      KernelError: see `solve_interpolant`; also `num_train` / `num_test` out of range.
      SingularKernelError: see `solve_interpolant`.
      TrainingError, DatasetError: the data cannot be found or read.
    """
    from heldout.release import label_corruption
    from heldout.training.data import open_source
    from heldout.training.plan import corruption_rng

    _check_gamma(options.gamma)  # before loading the data
    opened = open_source(dataset, data_dir)
    train = opened.source.load_arrays("train")
    test = opened.source.load_arrays("test")
    n = _first(num_train, train.labels.size, "num_train", "training")
    t = _first(num_test, test.labels.size, "num_test", "test")
    labels = train.labels
    if label_corrupt_prob > 0:
        corruption = label_corruption.corrupt_labels(
            labels, label_corrupt_prob, opened.source.num_classes, corruption_rng(seed)
        )
        labels = corruption.apply(labels)
    labels = labels[:n]
    fit = solve_interpolant(
        train.images[:n],
        one_hot(labels, opened.source.num_classes),
        options,
        on_stage,
    )
    start = time.perf_counter()
    test_predictions = fit.predict(test.images[:t], options.block_size)
    predict_seconds = time.perf_counter() - start
    if on_stage is not None:
        on_stage(Stage("predict", predict_seconds, f"{t} test examples"))
    return KernelRun(
        dataset=opened.name,
        data_dir=opened.data_dir,
        index_order=opened.index_order,
        label_corrupt_prob=float(label_corrupt_prob),
        seed=int(seed),
        interpolant=fit,
        train_labels=labels,
        train_predictions=fit.train_predictions(),
        test_labels=test.labels[:t],
        test_predictions=test_predictions,
        labels_changed=int(np.sum(labels != train.labels[:n])),
        predict_seconds=predict_seconds,
    )


def _first(count: int | None, available: int, name: str, split: str) -> int:
    if count is None:
        return available
    if not 1 <= count <= available:
        raise KernelError(
            f"{name} must be between 1 and the {available} examples of the {split} split, "
            f"got {count}"
        )
    return int(count)
