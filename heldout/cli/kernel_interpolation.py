"""`kernel_interpolation`: fit MNIST-like training labels exactly with an RBF kernel.

The minimum-norm interpolation of Zhang et al. (2017): solve K alpha = Y (one-hot
labels) for K(x, x') = exp(-gamma ||x - x'||^2) on pixels in [0, 1], and predict the test
split. The flags are defined here (the command is `tools/kernel_interpolation.py`,
calling `run()`); the work is `heldout.kernels.interpolation.interpolate_dataset`. `--dataset`,
`--data_dir`, `--label_corrupt_prob` and `--seed` are shared with `train_heldout`
(`heldout.cli.train_flags`): the same seed and probability give the same random labels.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from heldout.cli import app, train_flags
from heldout.errors import UsageError

train_flags.define_flags()  # --dataset, --data_dir, --label_corrupt_prob, --seed
_GAMMA = flags.DEFINE_float(
    "gamma", 0.02, "Kernel width: K(x, x') = exp(-gamma ||x - x'||^2), pixels in [0, 1]."
)
_NUM_TRAIN = flags.DEFINE_integer(
    "num_train", None, "Interpolate the first n training examples (default: all)."
)
_NUM_TEST = flags.DEFINE_integer(
    "num_test", None, "Predict the first m test examples (default: all)."
)
_OUTPUT = flags.DEFINE_string(
    "output",
    None,
    "Write the results here (.npz): test and training predictions and labels, errors, "
    "residual, and the settings they come from. Default: print only.",
)
_SAVE_COEFFICIENTS = flags.DEFINE_bool(
    "save_coefficients", False, "Also write the coefficients alpha [n, classes] to --output."
)
_DTYPE = flags.DEFINE_enum(
    "dtype",
    "float32",
    ["float32", "float64"],
    "Precision of the kernel matrix and its Cholesky factor (float32: 4 n^2 bytes, 14.4 GB "
    "for n = 60000; float64: twice that).",
)
_JITTER = flags.DEFINE_float(
    "jitter",
    0.0,
    "Ridge added to K's diagonal: solves (K + jitter I) alpha = Y. Default 0, the exact "
    "interpolant; use it only when the system is numerically singular.",
)
_TOLERANCE = flags.DEFINE_float(
    "tolerance", 1e-6, "Relative residual ||K alpha - Y|| / ||Y|| to reach by refinement."
)
_MAX_REFINE_STEPS = flags.DEFINE_integer(
    "max_refine_steps",
    6,
    "Iterative refinement steps allowed to reach --tolerance (each recomputes K alpha).",
)
_BLOCK_SIZE = flags.DEFINE_integer(
    "block_size", 1024, "Kernel columns computed per block (memory: about 4 n block_size bytes)."
)


def _check_flags() -> None:
    if not _GAMMA.value > 0:
        raise UsageError(f"--gamma must be positive, got {_GAMMA.value:g}")
    for flag in (_NUM_TRAIN, _NUM_TEST):
        if flag.value is not None and flag.value < 1:
            raise UsageError(f"--{flag.name} must be at least 1, got {flag.value}")
    if _BLOCK_SIZE.value < 1:
        raise UsageError(f"--block_size must be at least 1, got {_BLOCK_SIZE.value}")
    if _SAVE_COEFFICIENTS.value and not _OUTPUT.value:
        raise UsageError("--save_coefficients needs --output")


def _print_stage(stage) -> None:
    detail = f" ({stage.detail})" if stage.detail else ""
    names = {
        "kernel": "kernel matrix built",
        "cholesky": "Cholesky factorization (in place)",
        "solve": "triangular solves",
        "residual": "residual ||K alpha - Y|| / ||Y||",
        "predict": "test predictions",
    }
    print(f"{names.get(stage.name, stage.name)}: {stage.seconds:.1f} s{detail}", flush=True)


def main(argv: Sequence[str]) -> int:
    """Solves, predicts, prints `err = X.XX%`; 0 when done (errors: `app.guarded`)."""
    del argv
    from heldout._core import atomic
    from heldout.kernels import interpolation as kernels

    _check_flags()
    data = train_flags.data_options()
    if _OUTPUT.value:
        atomic.probe_writable(_OUTPUT.value)  # before the minutes of work whose result it holds
    result = kernels.interpolate_dataset(
        dataset=data.dataset,
        data_dir=data.data_dir,
        gamma=_GAMMA.value,
        num_train=_NUM_TRAIN.value,
        num_test=_NUM_TEST.value,
        label_corrupt_prob=data.label_corrupt_prob,
        seed=data.seed,
        dtype=_DTYPE.value,
        jitter=_JITTER.value,
        tolerance=_TOLERANCE.value,
        max_refine_steps=_MAX_REFINE_STEPS.value,
        block_size=_BLOCK_SIZE.value,
        on_stage=_print_stage,
    )
    fit = result.interpolant
    labels = (
        "true labels"
        if not result.labels_changed
        else f"{result.labels_changed} of {fit.num_train} labels corrupted "
        f"(--label_corrupt_prob={result.label_corrupt_prob:g}, --seed={result.seed})"
    )
    print(
        f"{result.dataset} ({result.data_dir}): n = {fit.num_train}, gamma = {fit.gamma:g}, "
        f"{fit.dtype}" + (f", jitter {fit.jitter:g}" if fit.jitter else "") + f", {labels}"
    )
    print(f"relative residual ||K alpha - Y|| / ||Y|| = {fit.relative_residual:.2e}")
    print(f"train err = {100 * result.train_error:.2f}% ({fit.num_train} examples)")
    if _OUTPUT.value:
        atomic.write_npz_atomic(_OUTPUT.value, result.arrays(coefficients=_SAVE_COEFFICIENTS.value))
        print(f"wrote {_OUTPUT.value}")
    print(f"err = {100 * result.test_error:.2f}%")
    return app.EXIT_OK


def run() -> None:
    """The `kernel_interpolation` command (tools/kernel_interpolation.py)."""
    app.run_command(main, name="kernel_interpolation")
