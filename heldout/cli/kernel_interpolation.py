"""`heldout kernel`: fit MNIST-like training labels exactly with an RBF kernel.

The minimum-norm interpolation of Zhang et al. (2017): solve K alpha = Y for
K(x, x') = exp(-gamma ||x - x'||^2) and predict the test split, printing `err = X.XX%`.
The same --seed and --label_corrupt_prob as `heldout train` give the same random labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app, options
from heldout.cli import flags as cli_flags
from heldout.errors import UsageError

EXAMPLES = """\
  heldout kernel --output=/tmp/kernel.npz                     # true labels
  heldout kernel --label_corrupt_prob=1.0 --output=/tmp/kernel-random.npz"""

cli_flags.training_data(__name__)  # --dataset, --data_dir, --label_corrupt_prob, --seed
_GAMMA = flags.DEFINE_float(
    "gamma", 0.02, "Kernel width: K(x, x') = exp(-gamma ||x - x'||^2), pixels in [0, 1]."
)
cli_flags.num_train(__name__, "They are interpolated.")
_NUM_TRAIN = flags.FlagHolder(flags.FLAGS, flags.FLAGS["num_train"])
_NUM_TEST = flags.DEFINE_integer(
    "num_test", None, "Predict the first m test examples (default: all)."
)
cli_flags.output(
    __name__,
    "Here .npz: test and training predictions and labels, errors, residual, and the "
    "settings they come from. Default: print only.",
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
    if _SAVE_COEFFICIENTS.value and not flags.FLAGS.output:
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


def _solve_options():
    """`heldout.kernels.SolveOptions` from the flags that bear its fields' names."""
    from heldout.kernels import interpolation as kernels

    fields = dataclasses.fields(kernels.SolveOptions)
    return kernels.SolveOptions(**{field.name: flags.FLAGS[field.name].value for field in fields})


def main(argv: Sequence[str]) -> int:
    """Solves, predicts, prints `err = X.XX%`; 0 when done (errors: `app.guarded`)."""
    del argv
    from heldout._core import atomic
    from heldout.kernels import interpolation as kernels

    _check_flags()
    refuse_output_over_inputs(
        [flags.FLAGS.output], data_dir=flags.FLAGS.data_dir, dataset=flags.FLAGS.dataset
    )
    data = options.data_options()
    if flags.FLAGS.output:
        atomic.probe_writable(
            flags.FLAGS.output
        )  # before the minutes of work whose result it holds
    result = kernels.interpolate_dataset(
        dataset=data.dataset,
        data_dir=data.data_dir,
        num_train=_NUM_TRAIN.value,
        num_test=_NUM_TEST.value,
        label_corrupt_prob=data.label_corrupt_prob,
        seed=data.seed,
        options=_solve_options(),
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
    if flags.FLAGS.output:
        atomic.write_npz_atomic(
            flags.FLAGS.output, result.arrays(coefficients=_SAVE_COEFFICIENTS.value)
        )
        print(f"wrote {flags.FLAGS.output}")
    print(f"err = {100 * result.test_error:.2f}%")
    return app.EXIT_OK


def run() -> None:
    """The `heldout kernel` command."""
    app.run_command(main, name="kernel_interpolation")
