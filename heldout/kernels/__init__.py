"""Kernel interpolation (Zhang et al., 2017) of MNIST-like training sets, without TensorFlow.

Modules: `rbf` (the Gaussian kernel in blocks), `cholesky` (the blocked in-place
factorization), `interpolation` (the minimum-norm interpolant, on arrays or a dataset).
"""

from heldout.kernels.interpolation import (
    KernelError,
    KernelInterpolant,
    KernelRun,
    SingularKernelError,
    SolveOptions,
    Stage,
    interpolate_dataset,
    one_hot,
    solve_interpolant,
)

__all__ = [
    "KernelError",
    "KernelInterpolant",
    "KernelRun",
    "SingularKernelError",
    "SolveOptions",
    "Stage",
    "interpolate_dataset",
    "one_hot",
    "solve_interpolant",
]
