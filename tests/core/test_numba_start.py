"""numba's array library loads without scipy.linalg, and numba still works as before."""

import subprocess
import sys

_CHECK = """
import sys
import numpy as np
from heldout.scores.backends import popcount
popcount.warm_up()
import numba.np.arraymath as arraymath
print("scipy.linalg" in sys.modules, arraymath._HAVE_BLAS)
from numba import njit
@njit
def correlate(a, b):
    return np.correlate(a, b)
print(correlate(np.arange(4.0), np.ones(2)).tolist())
"""


def test_popcount_loads_without_scipy_linalg_and_numba_keeps_its_blas():
    done = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, check=True
    )
    lines = done.stdout.split("\n")
    # The kernels and their cached code load without scipy.linalg; numba's flag says BLAS
    # is there (scipy is installed), and np.correlate compiles through it on demand.
    assert lines[0] == "False True"
    assert lines[1] == "[1.0, 3.0, 5.0]"
