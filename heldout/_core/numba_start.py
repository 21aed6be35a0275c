"""Loads numba's array library without the scipy probe it does not need here.

numba's `numba.np.arraymath` imports all of `scipy.linalg` only to set `_HAVE_BLAS`, and
that import holds the GIL while reader threads wait. `load_numba_arrays` imports it with
scipy hidden from this thread and sets the flag as the probe would have (details there).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading


class _HideScipyFromThisThread(importlib.abc.MetaPathFinder):
    """Makes `import scipy...` fail in one thread while scipy is not yet imported."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name, path=None, target=None):  # noqa: ARG002 - finder protocol
        if threading.get_ident() == self.thread and (name == "scipy" or name.startswith("scipy.")):
            raise ImportError(f"{name} hidden while numba's array library loads")
        return None


def load_numba_arrays() -> None:
    """Imports `numba.np.arraymath` (once per process) without importing scipy.

    Why: the flag decides whether compiled `np.correlate` and `np.convolve` may call BLAS; no
    kernel of this package uses them. The flag is set to what the probe would have found in a
    working install (scipy present), so numba behaves as before for any later code; the first
    such compile imports scipy itself (numba's `ensure_blas`). Other threads import scipy as
    usual.
    """
    if "numba.np.arraymath" in sys.modules:
        return
    finder = _HideScipyFromThisThread()  # finders see only modules not yet imported
    sys.meta_path.insert(0, finder)
    try:
        import numba.np.arraymath as arraymath
    finally:
        sys.meta_path.remove(finder)
    if "scipy.linalg.cython_blas" not in sys.modules:  # the probe was hidden, not run
        arraymath._HAVE_BLAS = importlib.util.find_spec("scipy") is not None
