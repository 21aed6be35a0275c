"""The one registry of influence backends: CLI name -> the module that implements it.

Each entry is a dotted module path, imported (with importlib) only when the backend is
used, so that choosing or listing backends imports neither numba nor TensorFlow; the
module's `BACKEND` implements `heldout.scores.backends.base.InfluenceBackend`.
"""

from __future__ import annotations

import importlib

from heldout.errors import UsageError
from heldout.scores.backends.base import InfluenceBackend

__all__ = ["AUTO", "BACKENDS", "REGISTRY", "get_backend"]

AUTO = "auto"  # not a backend: `heldout.scores.influence.choose_backend` picks one
REGISTRY = {
    "numpy": "heldout.scores.backends.numpy_gemm",
    "popcount": "heldout.scores.backends.bitplanes",  # kernels: backends.popcount (numba)
    "tf-gpu": "heldout.scores.backends.tf_gpu",  # the only module that imports TensorFlow
}
BACKENDS = (AUTO, *REGISTRY)  # what `--backend` accepts


def get_backend(name: str) -> InfluenceBackend:
    """The registered backend `name` (its module imported now, if it was not).

    Raises:
      UsageError: an unknown name.
    """
    if name not in REGISTRY:
        raise UsageError(f"unknown influence backend {name!r}; choose from {list(BACKENDS)}")
    return importlib.import_module(REGISTRY[name]).BACKEND
