"""Cholesky factorization and solves of matrices too large for 32-bit LAPACK, in place.

SciPy's LAPACK takes 32-bit integers and fails for n^2 > 2^31, so the blocked
left-looking algorithm is written here on `numpy.matmul` (64-bit indexed BLAS) over views
of the one matrix: LAPACK's flop count, the lower triangle only, a few panels of extra
memory. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.linalg import lapack

DEFAULT_BLOCK_SIZE = 1024


class NotPositiveDefinite(ArithmeticError):
    """A pivot that is not positive: the matrix is not (numerically) positive definite.

    Internal to the numerical code (callers turn it into their own error with advice).

    Attributes:
      pivot: the 1-based order of the leading minor that is not positive definite.
    """

    def __init__(self, pivot: int):
        super().__init__(f"the leading minor of order {pivot} is not positive definite")
        self.pivot = pivot


def _panels(n: int, block_size: int):
    for j in range(0, n, block_size):
        yield j, min(n, j + block_size)


def cholesky_lower_in_place(
    matrix: np.ndarray,
    block_size: int = DEFAULT_BLOCK_SIZE,
    on_panel: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Overwrites the lower triangle of `matrix` with L, where `matrix = L L^T`.

    Args:
      matrix: a square Fortran-ordered float32 / float64 array whose lower triangle and
        diagonal blocks hold a symmetric positive definite matrix; nothing above the
        diagonal blocks is read or written.
      block_size: columns per panel.
      on_panel: called as `on_panel(done_columns, n)` after each panel (progress).

    Returns:
      `matrix` itself (its lower triangle is L; the strict upper parts of the diagonal
      blocks are left as they were and must be ignored).

    Raises:
      NotPositiveDefinite: a pivot that is not positive (names its order).
    """
    n = matrix.shape[0]
    if matrix.ndim != 2 or matrix.shape[1] != n or not matrix.flags.f_contiguous:
        raise ValueError("need a square Fortran-ordered matrix")
    potrf, trtrs = lapack.get_lapack_funcs(("potrf", "trtrs"), (matrix,))
    for j, j1 in _panels(n, block_size):
        panel = matrix[j:, j:j1]  # a view: columns are contiguous
        if j:
            # Both operands are views with a unit stride: numpy hands them to sgemm/dgemm
            # as they are (leading dimension n), without copying L.
            panel -= np.matmul(matrix[j:, :j], matrix[j:j1, :j].T)
        diagonal = np.array(panel[: j1 - j], order="F")
        factor, info = potrf(diagonal, lower=1, clean=1, overwrite_a=1)
        if info > 0:
            raise NotPositiveDefinite(j + info)
        if info < 0:
            raise AssertionError(f"?potrf: invalid argument {-info}")
        panel[: j1 - j] = factor
        if j1 < n:
            # L21 = A21 L11^-T, i.e. L11 L21^T = A21^T: one triangular solve of a copy.
            below, info = trtrs(factor, np.asfortranarray(panel[j1 - j :].T), lower=1)
            if info != 0:
                raise AssertionError(f"?trtrs: info {info}")
            panel[j1 - j :] = below.T
        if on_panel is not None:
            on_panel(j1, n)
    return matrix


def cholesky_solve(
    factor: np.ndarray, rhs: np.ndarray, block_size: int = DEFAULT_BLOCK_SIZE
) -> np.ndarray:
    """Solves `L L^T x = rhs` with the factor of `cholesky_lower_in_place`.

    Args:
      factor: the factored matrix (only its lower triangle is read).
      rhs: `[n, k]` right-hand sides.
      block_size: rows per block (any value; the factor's panels need not match).

    Returns:
      x, `[n, k]` in the factor's dtype.
    """
    n = factor.shape[0]
    trtrs = lapack.get_lapack_funcs("trtrs", (factor,))
    x = np.array(rhs, dtype=factor.dtype, order="F", copy=True)
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"rhs must be [{n}, k], got {x.shape}")

    def diagonal(j, j1):
        return np.tril(factor[j:j1, j:j1])

    for j, j1 in _panels(n, block_size):  # forward: L y = rhs
        if j:
            x[j:j1] -= factor[j:j1, :j] @ x[:j]
        x[j:j1], _ = trtrs(diagonal(j, j1), np.asfortranarray(x[j:j1]), lower=1)
    for j, j1 in reversed(list(_panels(n, block_size))):  # backward: L^T x = y
        if j1 < n:
            x[j:j1] -= factor[j1:, j:j1].T @ x[j1:]
        x[j:j1], _ = trtrs(diagonal(j, j1), np.asfortranarray(x[j:j1]), lower=1, trans=1)
    return x
