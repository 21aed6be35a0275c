"""An export's tensors in and out of `model.safetensors`, and an export folder read back.

Tensors are named by the release's variable paths (`heldout.export.format`), so a reader
in any framework finds the checkpoint's variables under the names the release uses.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from heldout._core.atomic import atomic_open
from heldout.errors import ModelError
from heldout.export.format import (
    BATCH_NORM_EPSILON,
    FORMAT,
    JSON_FILE,
    MODEL_PREFIX,
    SAFETENSORS_FILE,
    TRAINING_STATE,
    VALUE_SUFFIX,
    ExportedModel,
)


def release_name(key: str) -> str | None:
    """`model/x/y/.ATTRIBUTES/VARIABLE_VALUE` -> `x/y`; None for what is not exported."""
    if not (key.startswith(MODEL_PREFIX) and key.endswith(VALUE_SUFFIX)):
        return None
    name = key[len(MODEL_PREFIX) : -len(VALUE_SUFFIX)]
    if any(name.endswith(part) for part in TRAINING_STATE):
        return None
    return name


def model_tensors(model) -> dict[str, np.ndarray]:
    """The inference tensors of a built TensorFlow model, by release variable path.

    Names come from the checkpoint key map (`heldout.models.checkpoints.model_checkpoint_keys`),
    so they are the names of the release's checkpoints.
    """
    from heldout.models.checkpoints import model_checkpoint_keys

    tensors = {}
    for key, variable in model_checkpoint_keys(model).items():
        name = release_name(key)
        if name is not None:
            tensors[name] = np.ascontiguousarray(variable.numpy())
    return tensors


def batch_norm_epsilon(model) -> float:
    """The epsilon of the model's BatchNorms (one value; Sonnet's default when none)."""
    import sonnet as snt

    values = {
        float(m._eps)  # noqa: SLF001 - Sonnet keeps it private; the export must record it
        for m in model.submodules
        if isinstance(m, snt.BatchNorm) and hasattr(m, "_eps")
    }
    if len(values) > 1:
        raise ModelError(f"the model's BatchNorms use several epsilons {sorted(values)}")
    return values.pop() if values else BATCH_NORM_EPSILON


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], meta: dict):
    """Writes tensors as safetensors, atomically; `meta` (str -> str) goes in its header."""
    from safetensors.numpy import save

    data = save({name: np.ascontiguousarray(t) for name, t in tensors.items()}, metadata=meta)
    with atomic_open(path, "wb") as f:
        f.write(data)


def load_export(path: str | os.PathLike) -> ExportedModel:
    """Reads an export folder (or its `model.safetensors`, with `model.json` beside it).

    Raises:
      ModelError: a missing or unreadable file, a `model.json` of another format, or a
        safetensors file whose sha256 differs from the one `model.json` records (the two
        files are not of one export).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    tensors_path, json_path = folder / SAFETENSORS_FILE, folder / JSON_FILE
    for needed in (tensors_path, json_path):
        if not needed.is_file():
            raise ModelError(f"{needed}: not found; is {folder} an export folder?")
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"{json_path}: cannot read as JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{json_path}: not a {FORMAT} description")
    recorded = meta.get("files", {}).get(SAFETENSORS_FILE, {}).get("sha256")
    if recorded and recorded != file_sha256(tensors_path):
        raise ModelError(
            f"{tensors_path}: its sha256 differs from the one {json_path} records; the two "
            "files are not of one export (copied from different folders?)"
        )
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelError(f"{tensors_path}: cannot read as safetensors ({error})") from None
    return ExportedModel(tensors, meta, folder)
