"""The blocked in-place Cholesky behind the kernel interpolation (heldout.kernels.cholesky)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from heldout.kernels import cholesky


def _spd(n: int, dtype, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8))
    sq = (x * x).sum(1)
    k = np.exp(-0.5 * np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)) + 0.05 * np.eye(n)
    return np.asfortranarray(k.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block_size", [7, 64, 500])
def test_factor_and_solve_equal_lapack(dtype, block_size):
    n = 300
    matrix = _spd(n, dtype)
    expected = scipy.linalg.cholesky(matrix.astype(np.float64), lower=True)
    rhs = np.random.default_rng(1).standard_normal((n, 4))
    # Above the diagonal blocks nothing may be read: NaN there must not spread.
    for j in range(0, n, block_size):
        matrix[:j, j : j + block_size] = np.nan
    factor = cholesky.cholesky_lower_in_place(matrix, block_size)
    assert factor is matrix
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(np.tril(np.nan_to_num(factor)), expected, atol=tolerance)
    for j in range(0, n, block_size):
        assert np.isnan(matrix[:j, j : j + block_size]).all()  # and nothing was written there
    solution = cholesky.cholesky_solve(factor, rhs, block_size=29)
    reference = scipy.linalg.cho_solve((expected, True), rhs)
    np.testing.assert_allclose(solution, reference, rtol=0, atol=1e3 * tolerance)


def test_a_matrix_that_is_not_positive_definite_names_the_pivot():
    matrix = _spd(100, np.float64)
    matrix[70, 70] = -1.0  # the leading minor of order 71 is not positive definite
    with pytest.raises(cholesky.NotPositiveDefinite) as caught:
        cholesky.cholesky_lower_in_place(matrix, block_size=32)
    assert caught.value.pivot == 71


def test_only_fortran_ordered_square_matrices():
    with pytest.raises(ValueError, match="Fortran-ordered"):
        cholesky.cholesky_lower_in_place(np.ones((4, 3), dtype=np.float32, order="F"))
