"""Find, restore (strictly) and write checkpoints in the release's format.

A run folder holds `checkpoints/ckpt-<epoch>.index` and `.data-*` files, keyed as
`heldout.models.checkpoint_keys` says. `restore` opens a checkpoint once and compares its
variables with the model's before assigning anything (`checkpoint_diagnosis`);
`RestoreTarget` restores many checkpoints into one built model; `save` never replaces one.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import sonnet as snt
import tensorflow as tf

from heldout._core.write_safety import ensure_dir
from heldout.errors import CheckpointError
from heldout.models.build import ensure_variables
from heldout.models.checkpoint_diagnosis import MAX_LISTED, diagnose
from heldout.models.checkpoint_keys import (  # noqa: F401 - the keys are part of this API
    EPOCH_KEY,
    GLOBAL_STEP_KEY,
    OBJECT_GRAPH_KEY,
    VALUE_SUFFIX,
    model_checkpoint_keys,
)

CHECKPOINTS_DIR = "checkpoints"
PREFIX_NAME = "ckpt"

_CKPT_INDEX_RE = re.compile(r"^ckpt-(\d+)\.index$", re.ASCII)  # no "ckpt-٣"


@dataclasses.dataclass(frozen=True)
class RestoreInfo:
    """Which checkpoint was restored, and the counters saved with it."""

    path: Path  # the checkpoint prefix (".../checkpoints/ckpt-<epoch>")
    epoch: int
    global_step: int


# --------------------------------------------------------------------------- finding


def _checkpoints_in(folder: Path) -> list[Path]:
    """Prefixes of the `ckpt-<n>.index` files in `folder`, sorted by n."""
    found = []
    for entry in folder.iterdir():
        m = _CKPT_INDEX_RE.match(entry.name)
        if m and entry.is_file():
            found.append((int(m.group(1)), folder / entry.name[: -len(".index")]))
    return [prefix for _, prefix in sorted(found)]


def _describe_folder(folder: Path) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError as e:
        return f"(cannot list it: {e})"
    if not names:
        return "(the folder is empty)"
    shown = ", ".join(names[:MAX_LISTED])
    more = f", ... ({len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
    return f"(it contains: {shown}{more})"


def find_checkpoint(path: str | Path) -> Path:
    """The single checkpoint of a run: returns its prefix `.../checkpoints/ckpt-<n>`.

    `path` may be a run folder (containing `checkpoints/`), the `checkpoints/` folder itself,
    a checkpoint prefix, or its `.index` file. Raises CheckpointError naming the folder when
    there is no checkpoint or more than one.
    """
    path = Path(path)
    if path.name.endswith(".index") and path.is_file():
        return path.with_name(path.name[: -len(".index")])
    if not path.is_dir() and path.with_name(path.name + ".index").is_file():
        return path  # a prefix
    if not path.exists():
        raise CheckpointError(f"{path}: no such run folder or checkpoint")
    if not path.is_dir():
        raise CheckpointError(
            f"{path}: not a run folder, a checkpoints/ folder or a checkpoint .index file"
        )
    folder = path / CHECKPOINTS_DIR if (path / CHECKPOINTS_DIR).is_dir() else path
    prefixes = _checkpoints_in(folder)
    if not prefixes:
        hint = ""
        if folder == path and not (path / CHECKPOINTS_DIR).exists():
            hint = f" and no {CHECKPOINTS_DIR}/ subfolder"
        raise CheckpointError(
            f"{folder}: no checkpoint (ckpt-*.index){hint} {_describe_folder(folder)}"
        )
    if len(prefixes) > 1:
        names = ", ".join(p.name for p in prefixes)
        raise CheckpointError(
            f"{folder}: {len(prefixes)} checkpoints ({names}); a run holds exactly one "
            f"(its final epoch). Remove the others or pass the prefix of the one to use, "
            f"e.g. {prefixes[-1]}"
        )
    return prefixes[0]


# --------------------------------------------------------------------------- reading


def _data_files(prefix: Path) -> list[Path]:
    return sorted(prefix.parent.glob(prefix.name + ".data-*"))


def checkpoint_files(prefix: str | Path) -> list[Path]:
    """The files of one checkpoint: its `.index` and `.data-*` shards (those present)."""
    prefix = Path(prefix)
    index = prefix.with_name(prefix.name + ".index")
    return [f for f in [index, *_data_files(prefix)] if f.exists()]


def _unreadable(prefix: Path, err: BaseException, what: str) -> CheckpointError:
    sizes = (
        ", ".join(f"{f.name} ({f.stat().st_size} bytes)" for f in checkpoint_files(prefix))
        or "no files"
    )
    text = str(err).strip()
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:\w+\]$", "", text)
    first_line = text.splitlines()[0] if text else "(no message)"
    return CheckpointError(
        f"{prefix}: cannot {what}: the checkpoint files are truncated or corrupt "
        f"(an interrupted download or extraction?). Files: {sizes}. "
        f"TensorFlow said: {type(err).__name__}: {first_line}"
    )


@dataclasses.dataclass(frozen=True)
class _OpenCheckpoint:
    """A checkpoint opened once: its reader and variable list, shared by check and restore."""

    prefix: Path
    reader: Any  # tf.train.CheckpointReader
    shapes: dict[str, list[int]]
    dtypes: dict[str, tf.DType]


def _open(prefix: Path) -> _OpenCheckpoint:
    """The one place a checkpoint is opened (its index read); file problems are errors."""
    if not prefix.with_name(prefix.name + ".index").is_file():
        raise CheckpointError(f"{prefix}.index: no such checkpoint index file")
    data = _data_files(prefix)
    if not data:
        raise CheckpointError(
            f"{prefix}: the index exists but no {prefix.name}.data-* file does "
            f"(incomplete copy or extraction?) {_describe_folder(prefix.parent)}"
        )
    for f in data:
        m = re.search(r"\.data-(\d+)-of-(\d+)$", f.name)
        if m and len(data) != int(m.group(2)):
            raise CheckpointError(
                f"{prefix}: expected {int(m.group(2))} data shard(s), found {len(data)} "
                f"({', '.join(x.name for x in data)})"
            )
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except Exception as e:  # noqa: BLE001 - truncated files raise IndexError, OpError, ...
        raise _unreadable(prefix, e, "read the checkpoint index") from e
    shapes.pop(OBJECT_GRAPH_KEY, None)
    dtypes.pop(OBJECT_GRAPH_KEY, None)
    return _OpenCheckpoint(prefix, reader, shapes, dtypes)


def read_variable_shapes(prefix: str | Path) -> tuple[dict[str, list[int]], dict[str, tf.DType]]:
    """(key -> shape, key -> dtype) of a checkpoint, without the object-graph entry.

    Raises:
      CheckpointError: missing index or data files, or files TensorFlow cannot read.
    """
    opened = _open(Path(prefix))
    return opened.shapes, opened.dtypes


# ------------------------------------------------------------------------------ restore


class RestoreTarget:
    """A built model that checkpoints are restored into, in place, one after another.

    Re-evaluating thousands of runs of one architecture needs one model, not thousands:
    building a model and tracing its evaluation step cost far more than assigning its
    weights. This object builds the variables and maps checkpoint keys to them once; each
    `restore` then opens the checkpoint once, checks it against that map, reads every
    value, and only then assigns them, so a checkpoint that does not fit or cannot be read
    leaves the model as it was.

    Restoring in place is only safe when every variable of the model is in the checkpoint
    (a variable that is not would silently keep the previous run's value), so that is
    checked here, once.

    Args:
      model: the model (built or not; its variables are created here).
      image_shape: [H, W, C], needed only to create the variables of models that
        `heldout.models` does not know, or of an MLP fed other than 28x28x1 images.

    Raises:
      CheckpointError: the model has variables a checkpoint of it would not hold.
      ModelError: the variables cannot be created (unknown model, no image_shape).
    """

    def __init__(self, model: snt.Module, image_shape: tuple[int, int, int] | None = None):
        ensure_variables(model, image_shape)
        self.model = model
        self.variables = model_checkpoint_keys(model)
        saved = {id(v) for v in self.variables.values()}
        unsaved = [v.name for v in model.variables if id(v) not in saved]
        if unsaved:
            raise CheckpointError(
                f"{type(model).__name__}: {len(unsaved)} variable(s) are not part of its "
                f"checkpoints ({', '.join(unsaved[:MAX_LISTED])}); restoring into this "
                "model would keep their earlier values"
            )

    def _check(self, path: str | Path) -> _OpenCheckpoint:
        opened = _open(find_checkpoint(path))
        problem = diagnose(opened.prefix, self.model, opened.shapes, opened.dtypes, self.variables)
        if problem:
            raise CheckpointError(problem)
        return opened

    def check(self, path: str | Path) -> Path:
        """Raises CheckpointError unless the checkpoint at `path` fits exactly; its prefix."""
        return self._check(path).prefix

    def restore(self, path: str | Path) -> RestoreInfo:
        """Assigns every variable of the model from the checkpoint at `path`.

        Args:
          path: a run folder, its `checkpoints/` folder, a checkpoint prefix or `.index`.

        Returns:
          The checkpoint's prefix, epoch and global step.

        Raises:
          CheckpointError: no single checkpoint at `path`; a variable missing on either
            side, or a shape or dtype mismatch (listed by name, with the likely cause);
            truncated or corrupt files. Nothing is assigned in any of these cases.
        """
        opened = self._check(path)
        try:
            values = {key: opened.reader.get_tensor(key) for key in self.variables}
            epoch = int(opened.reader.get_tensor(EPOCH_KEY))
            global_step = int(opened.reader.get_tensor(GLOBAL_STEP_KEY))
        except Exception as e:  # noqa: BLE001 - truncated files raise IndexError, OpError, ...
            raise _unreadable(opened.prefix, e, "restore the variables") from e
        for key, variable in self.variables.items():
            variable.assign(values[key])
        return RestoreInfo(path=opened.prefix, epoch=epoch, global_step=global_step)


def check_compatible(
    model: tf.Module, path: str | Path, image_shape: tuple[int, int, int] | None = None
) -> Path:
    """Raises CheckpointError unless the checkpoint restores exactly into `model`.

    Creates the model's variables first (`heldout.models.build.ensure_variables`).
    Returns the prefix.
    """
    return RestoreTarget(model, image_shape).check(path)


def restore(
    model: snt.Module, path: str | Path, image_shape: tuple[int, int, int] | None = None
) -> RestoreInfo:
    """Restores a run's checkpoint into `model`, strictly; returns epoch and global step.

    Every model variable must get a value and every checkpoint value must have a model
    variable, with equal shapes and dtypes. To restore many checkpoints into one model,
    keep a `RestoreTarget` (this builds one per call).

    Args:
      model: the model to assign (its variables are created if needed).
      path: a run folder, its `checkpoints/` folder or a checkpoint prefix.
      image_shape: only for models `heldout.models` does not know (to create their
        variables), or an MLP fed other than 28x28x1 images.

    Returns:
      The checkpoint's prefix, epoch and global step.

    Raises:
      CheckpointError: see `RestoreTarget.restore`; nothing is assigned then.
    """
    return RestoreTarget(model, image_shape).restore(path)


# --------------------------------------------------------------------------------- save


def checkpoint_dir_for(run_dir_or_checkpoints_dir: str | Path) -> Path:
    """`<run>/checkpoints` for a run folder; a folder named `checkpoints` is used as is."""
    d = Path(run_dir_or_checkpoints_dir)
    return d if d.name == CHECKPOINTS_DIR else d / CHECKPOINTS_DIR


def save(
    model: snt.Module,
    run_dir_or_checkpoints_dir: str | Path,
    epoch: int,
    global_step: int,
    keep_others: bool = False,
) -> Path:
    """Writes `<run>/checkpoints/ckpt-<epoch>` in the release's format; returns the prefix.

    Same keys as the release (`model/...`, `epoch`, `global_step` as int64; no
    `save_counter`). This never deletes or replaces a checkpoint: a library call pointed
    at a downloaded run must not destroy the released checkpoint. Writing into a fresh
    folder (as the trainer does, inside the temporary run folder) is the normal case.

    Args:
      model: the model to save (its variables are created if needed).
      run_dir_or_checkpoints_dir: a run folder (its `checkpoints/` is used) or a folder
        named `checkpoints`; created if missing.
      epoch: saved as the `epoch` counter and in the file name.
      global_step: saved as the `global_step` counter.
      keep_others: write even when the folder already holds other checkpoints, keeping
        them (the run then holds several, which `find_checkpoint` refuses to choose
        between). Default: refuse.

    Returns:
      The written checkpoint's prefix.

    Raises:
      CheckpointError: negative counters; `ckpt-<epoch>` exists already; the folder holds
        other checkpoints and not `keep_others`. Remove them first if they are yours.
    """
    epoch = int(epoch)
    global_step = int(global_step)
    if epoch < 0 or global_step < 0:
        raise CheckpointError(f"epoch and global_step must be >= 0, got {epoch}, {global_step}")
    ensure_variables(model)
    folder = checkpoint_dir_for(run_dir_or_checkpoints_dir)
    ensure_dir(folder)
    prefix = folder / f"{PREFIX_NAME}-{epoch}"
    present = _checkpoints_in(folder)
    if prefix in present or any(folder.glob(prefix.name + ".*")):
        raise CheckpointError(f"{prefix}: a checkpoint of that name exists; not replacing it")
    if present and not keep_others:
        names = ", ".join(p.name for p in present)
        raise CheckpointError(
            f"{folder}: already holds {names}; a run holds one checkpoint, and saving does "
            "not delete checkpoints it did not write. Save into a fresh folder, remove the "
            "old checkpoint yourself, or pass keep_others=True"
        )
    ckpt = tf.train.Checkpoint(
        model=model,
        epoch=tf.Variable(epoch, dtype=tf.int64, trainable=False),
        global_step=tf.Variable(global_step, dtype=tf.int64, trainable=False),
    )
    return Path(ckpt.write(str(prefix)))
