"""The Gaussian (RBF) kernel `exp(-gamma ||x - x'||^2)` of image sets, in blocks.

One GEMM per block for the inner products; the training kernel's lower part is computed
in one place (`lower_blocks`), so the factored matrix and the products that measure its
residual get the very same values. No TensorFlow; numpy only.
"""

from __future__ import annotations

import numpy as np

DEFAULT_BLOCK_SIZE = 1024  # columns (build) or rows (products) per block


def flatten_images(images: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """uint8 `[N, H, W, C]` (or already flat) -> `[N, H*W*C]` in [0, 1], C-ordered."""
    images = np.asarray(images)
    flat = images.reshape(images.shape[0], -1).astype(dtype)
    if images.dtype == np.uint8:
        flat /= 255
    return flat


def centred(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    # Distances do not change, and the norms in |a|^2 + |b|^2 - 2 a.b get smaller, so
    # less of float32's precision is lost to cancellation for nearby images.
    x -= mean
    return x


def rbf_block(
    rows: np.ndarray,
    rows_sq: np.ndarray,
    cols: np.ndarray,
    cols_sq: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """`exp(-gamma ||r - c||^2)` for every pair, `[len(rows), len(cols)]`, in rows' dtype.

    One GEMM for the inner products (the expensive part), then in-place updates.
    """
    block = rows @ cols.T
    block *= -2
    block += rows_sq[:, None]
    block += cols_sq[None, :]
    np.maximum(block, 0, out=block)  # rounding can make a tiny distance negative
    block *= -gamma
    np.exp(block, out=block)
    return block


def lower_blocks(x: np.ndarray, gamma: float, block_size: int):
    """Yields (c0, c1, K[c0:, c0:c1]): the column blocks of K's lower part, in order.

    The one place K's entries are computed for the training set: the matrix that is
    factored and the products that measure its residual get the very same values.
    """
    n = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x)
    for c0 in range(0, n, block_size):
        c1 = min(n, c0 + block_size)
        yield c0, c1, rbf_block(x[c0:], sq[c0:], x[c0:c1], sq[c0:c1], gamma)


def kernel_lower(
    x: np.ndarray, gamma: float, jitter: float = 0.0, block_size: int = DEFAULT_BLOCK_SIZE
) -> np.ndarray:
    """K's lower triangle (and diagonal blocks), built in place in one Fortran-ordered array.

    Columns `c0:c1` get rows `c0:n` from one GEMM each; nothing above the diagonal
    blocks is written (LAPACK's lower Cholesky never reads it). `jitter` is added to the
    diagonal.

    Returns:
      The `[n, n]` array, in x's dtype.
    """
    n = x.shape[0]
    kernel = np.zeros((n, n), dtype=x.dtype, order="F")
    for c0, c1, block in lower_blocks(x, gamma, block_size):
        if jitter:
            block[np.arange(c1 - c0), np.arange(c1 - c0)] += jitter
        kernel[c0:, c0:c1] = block
        del block
    return kernel


def symmetric_kernel_times(
    x: np.ndarray, coefficients: np.ndarray, gamma: float, block_size: int = DEFAULT_BLOCK_SIZE
) -> np.ndarray:
    """`K(x, x) @ coefficients`, float64, from K's lower blocks only (half the GEMM work).

    Each block below the diagonal is used twice, as itself and as its transpose (K is
    symmetric); the products are taken in float64.
    """
    coefficients = np.asarray(coefficients, dtype=np.float64)
    out = np.zeros((x.shape[0], coefficients.shape[1]), dtype=np.float64)
    for c0, c1, block in lower_blocks(x, gamma, block_size):
        block = block.astype(np.float64)
        out[c0:] += block @ coefficients[c0:c1]
        below = block[c1 - c0 :]
        out[c0:c1] += below.T @ coefficients[c1:]
        del block, below
    return out


def kernel_times(
    x_rows: np.ndarray,
    x_train: np.ndarray,
    coefficients: np.ndarray,
    gamma: float,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> np.ndarray:
    """`K(x_rows, x_train) @ coefficients`, float64 `[m, C]`, without storing K.

    Row blocks of the kernel are recomputed from the images and multiplied in float64,
    so the product (the residual, the predictions) does not lose the precision that
    summing n terms in float32 would.
    """
    train_sq = np.einsum("ij,ij->i", x_train, x_train)
    rows_sq = np.einsum("ij,ij->i", x_rows, x_rows)
    coefficients = np.asarray(coefficients, dtype=np.float64)
    out = np.empty((x_rows.shape[0], coefficients.shape[1]), dtype=np.float64)
    for r0 in range(0, x_rows.shape[0], block_size):
        r1 = min(x_rows.shape[0], r0 + block_size)
        block = rbf_block(x_rows[r0:r1], rows_sq[r0:r1], x_train, train_sq, gamma)
        out[r0:r1] = block.astype(np.float64) @ coefficients
        del block
    return out
