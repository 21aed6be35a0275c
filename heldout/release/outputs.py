"""Per-run model outputs: `outputs.npz`, the continuous store every attribution metric reads.

Beside each run's `aux_arrays.npz` (or under a user's `--outputs_dir` with the same layout),
it holds, aligned with the aux arrays' `index_<split>`, the logit margin (TRAK's model output),
the hinge margin (whose sign is correctness) and optionally float16 logits, plus the identity
of the checkpoint they came from. Loading checks both against the run's aux arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from heldout._core.atomic import write_npz_atomic
from heldout._core.npz import load_npz
from heldout._core.npz_direct_read import read_stored_npz
from heldout._core.provenance import parse_provenance, provenance_for
from heldout.errors import OutputsError, UsageError
from heldout.release.aux_arrays import AuxArrays
from heldout.release.layout import CHECKPOINTS_DIR
from heldout.release.run_folders import AUX_ARRAYS_FILE

OUTPUTS_FILE = "outputs.npz"
SPLITS = ("train", "removed", "test")
MAX_LOGIT_CLASSES = 100  # full logits are stored for at most this many classes
_ROWS_PER_BLOCK = 1 << 15  # rows of logits converted to float64 at a time
_PROVENANCE_BYTES = 1 << 20  # the most the provenance JSON may declare


@dataclasses.dataclass(frozen=True)
class RunOutputs:
    """One run's outputs, each array aligned with the aux arrays' `index_<split>`."""

    logit_margin: dict[str, np.ndarray]  # split -> float32 [n_split]
    hinge_margin: dict[str, np.ndarray]  # split -> float32 [n_split]
    index: dict[str, np.ndarray]  # split -> int64 [n_split]
    logits: dict[str, np.ndarray]  # split -> float16 [n_split, classes]; empty when not kept
    provenance: dict
    source: str = "<memory>"

    @property
    def identity(self) -> dict:
        """The checkpoint identity the outputs came from (the writer's `identity`)."""
        return self.provenance.get("identity", {})

    def in_index_order(self, split: str, kind: str = "logit_margin") -> np.ndarray:
        """float32 outputs of `split` in index order ("train": the full training split,
        trained-on and removed examples together)."""
        values = getattr(self, kind)
        if split == "train" and "removed" in self.index:
            size = self.index["train"].size + self.index["removed"].size
            out = np.empty(size, dtype=np.float32)
            out[self.index["train"]] = values["train"]
            out[self.index["removed"]] = values["removed"]
            return out
        out = np.empty(self.index[split].size, dtype=np.float32)
        out[self.index[split]] = values[split]
        return out


def margins_from_logits(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The logit margin φ = z_y − logsumexp_{k≠y} z_k and the hinge margin z_y − max_{k≠y} z_k.

    Computed in float64 blocks with the max subtracted before exponentiating, so large
    logits (float16 or float32) never overflow and ties give a hinge margin of exactly 0.

    Args:
      logits: [n, classes] floats, classes >= 2.
      labels: [n] integer class of each example.

    Returns:
      (logit_margin, hinge_margin), float32 [n] each.

    Raises:
      ValueError: shapes that do not match, fewer than 2 classes, or a label out of range.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} do not match")
    n, classes = logits.shape
    if classes < 2:
        raise ValueError(f"margins need at least 2 classes, got {classes}")
    if n and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes}), got {labels.min()}..{labels.max()}")
    logit_margin = np.empty(n, dtype=np.float32)
    hinge_margin = np.empty(n, dtype=np.float32)
    for start in range(0, n, _ROWS_PER_BLOCK):
        block = logits[start : start + _ROWS_PER_BLOCK].astype(np.float64)
        rows = np.arange(block.shape[0])
        y = labels[start : start + _ROWS_PER_BLOCK].astype(np.int64)
        z_y = block[rows, y]
        block[rows, y] = -np.inf  # the others only
        top = block.max(axis=1)
        with np.errstate(invalid="ignore", over="ignore"):
            rest = top + np.log(np.exp(block - top[:, None]).sum(axis=1))
        logit_margin[start : start + block.shape[0]] = z_y - rest
        hinge_margin[start : start + block.shape[0]] = z_y - top
    return logit_margin, hinge_margin


def outputs_path(run_path: str | os.PathLike, experiment_dir=None, outputs_dir=None) -> Path:
    """Where a run's `outputs.npz` lives: beside its aux arrays, or under `outputs_dir` at the
    run's path relative to `experiment_dir` (the release's layout, never the downloaded tree).

    Args:
      run_path: the run's folder.
      experiment_dir: its experiment's folder (needed with `outputs_dir`).
      outputs_dir: the user's outputs folder; None: beside the aux arrays.

    Returns:
      `<run_path>/outputs.npz` or `<outputs_dir>/<ratio>/<run_id>/outputs.npz`.
    """
    run_path = Path(run_path)
    if outputs_dir is None:
        return run_path / OUTPUTS_FILE
    return Path(outputs_dir) / run_path.relative_to(experiment_dir) / OUTPUTS_FILE


def run_identity(run_dir: str | os.PathLike, subset_ratio: float, run_id: int) -> dict:
    """A run's checkpoint identity, stable under copying the experiment elsewhere: its place
    (ratio, run id), the sha256 of its aux arrays, and its last checkpoint's name and bytes.

    Args:
      run_dir: the run's folder (or its temporary folder before it is committed).
      subset_ratio, run_id: where the run sits in its experiment.
    """
    run_dir = Path(run_dir)
    identity = {"subset_ratio": float(subset_ratio), "run_id": int(run_id)}
    identity["aux_sha256"] = hashlib.sha256((run_dir / AUX_ARRAYS_FILE).read_bytes()).hexdigest()
    checkpoint_dir = run_dir / CHECKPOINTS_DIR
    steps = [
        (int(p.name[5:-6]), p.name[:-6])
        for p in checkpoint_dir.glob("ckpt-*.index")
        if p.name[5:-6].isdigit()
    ]
    if steps:
        stem = max(steps)[1]
        parts = [p for p in checkpoint_dir.glob(stem + ".*") if p.is_file()]
        identity["checkpoint"] = stem
        identity["checkpoint_bytes"] = int(sum(p.stat().st_size for p in parts))
    return identity


def outputs_from_logits(
    logits: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    aux: AuxArrays,
    keep_logits: bool = False,
) -> dict[str, np.ndarray]:
    """The arrays of `outputs.npz` from index-order logits and labels of each split.

    Args:
      logits: "train" (the full training split) and "test" -> [n, classes] in index order.
      labels: the same splits -> [n] labels the margins are taken against.
      aux: the run's aux arrays, whose `index_<split>` orders the outputs.
      keep_logits: also store float16 logits (refused above `MAX_LOGIT_CLASSES` classes).

    Returns:
      key -> array, ready for `save_outputs`.

    Raises:
      UsageError: `keep_logits` with more than `MAX_LOGIT_CLASSES` classes.
    """
    margins = {s: margins_from_logits(logits[s], labels[s]) for s in ("train", "test")}
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        source = "test" if split == "test" else "train"
        index = np.asarray(getattr(aux, f"index_{split}"), dtype=np.int64)
        arrays[f"index_{split}"] = index
        arrays[f"logit_margin_{split}"] = margins[source][0][index]
        arrays[f"hinge_margin_{split}"] = margins[source][1][index]
        if keep_logits:
            classes = logits[source].shape[1]
            if classes > MAX_LOGIT_CLASSES:
                raise UsageError(
                    f"logits are kept for <= {MAX_LOGIT_CLASSES} classes, not {classes}"
                )
            arrays[f"logits_{split}"] = np.asarray(logits[source])[index].astype(np.float16)
    return arrays


def save_outputs(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], identity: dict, **fields
) -> None:
    """Writes `outputs.npz` atomically (a temporary renamed into place, never through a link).

    Args:
      path: the file.
      arrays: from `outputs_from_logits`.
      identity: the checkpoint identity (`run_identity`), compared on load and on resume.
      fields: more provenance (e.g. `labels_source="after_corruption"`).

    Raises:
      UnsafeWriteError: the target is a link or cannot be written (disk full), naming it.
    """
    record = provenance_for(identity=identity, **fields)
    write_npz_atomic(path, {**arrays, "provenance": np.array(json.dumps(record, sort_keys=True))})


def save_run_outputs(
    run_dir: str | os.PathLike,
    subset_ratio: float,
    run_id: int,
    aux: AuxArrays,
    logits: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    keep_logits: bool = False,
    labels_source: str = "dataset",
    **fields,
) -> Path:
    """Writes a run's `outputs.npz` beside its aux arrays (already written in `run_dir`).

    Args:
      run_dir: the run's folder (its temporary folder while the trainer builds it).
      subset_ratio, run_id: where the run sits, for its identity.
      aux, logits, labels, keep_logits: as `outputs_from_logits`.
      labels_source: where the labels came from ("dataset", or "after_corruption" where the
        experiment records a label corruption), kept in the provenance.
      fields: more provenance.

    Returns:
      The written file.
    """
    path = Path(run_dir) / OUTPUTS_FILE
    arrays = outputs_from_logits(logits, labels, aux, keep_logits)
    identity = run_identity(run_dir, subset_ratio, run_id)
    save_outputs(path, arrays, identity, labels_source=labels_source, **fields)
    return path


def _max_bytes(aux: AuxArrays | None) -> int | None:
    if aux is None:
        return None
    examples = aux.num_train + aux.num_test
    return examples * (4 + 4 + 8 + 2 * MAX_LOGIT_CLASSES) + _PROVENANCE_BYTES


def load_outputs(
    path: str | os.PathLike,
    expect_identity: dict | None = None,
    aux: AuxArrays | None = None,
) -> RunOutputs:
    """Reads and checks one `outputs.npz` without unpickling.

    Args:
      path: the file.
      expect_identity: the checkpoint identity it must carry (None: not checked).
      aux: the run's aux arrays; when given, the file may declare no more bytes than their
        sizes allow, its `index_<split>` must equal theirs, and the sign of its hinge margin
        must agree with their correctness (a tie, margin 0, agrees with either).

    Returns:
      The checked outputs.

    Raises:
      OutputsError: missing, malformed, from another checkpoint, or disagreeing with the
        aux arrays; the message starts with the file.
    """
    source = str(path)
    # The direct reader handles the files heldout writes (one read per array); anything
    # else, including every broken file, goes through the one loader, which names the fault.
    arrays = read_stored_npz(path, _max_bytes(aux))
    if arrays is None:
        arrays = load_npz(
            path, error=OutputsError, what="an outputs.npz file", max_bytes=_max_bytes(aux)
        )
    if "provenance" not in arrays:
        raise OutputsError(f"{source}: no `provenance` (not an outputs.npz heldout wrote)")
    provenance = parse_provenance(arrays.pop("provenance"), source, OutputsError)
    if expect_identity is not None and provenance.get("identity") != expect_identity:
        raise OutputsError(
            f"{source}: from another checkpoint (identity {provenance.get('identity')}, "
            f"expected {expect_identity}); remove it or give the matching run"
        )
    outputs = _typed(arrays, provenance, source)
    if aux is not None:
        _check_against_aux(outputs, aux, source)
    return outputs


def _typed(arrays: dict[str, np.ndarray], provenance: dict, source: str) -> RunOutputs:
    splits = [s for s in SPLITS if f"index_{s}" in arrays]
    if "test" not in splits or "train" not in splits:
        raise OutputsError(f"{source}: needs index_train and index_test (it has {sorted(arrays)})")
    known = {
        f"{k}_{s}" for s in splits for k in ("index", "logit_margin", "hinge_margin", "logits")
    }
    extra = sorted(set(arrays) - known)
    if extra:
        raise OutputsError(f"{source}: unexpected arrays {extra}")
    fields: dict[str, dict] = {"index": {}, "logit_margin": {}, "hinge_margin": {}, "logits": {}}
    for split in splits:
        index = arrays[f"index_{split}"]
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise OutputsError(f"{source}: index_{split} must be 1-D integers")
        fields["index"][split] = index.astype(np.int64, copy=False)
        for kind in ("logit_margin", "hinge_margin"):
            key = f"{kind}_{split}"
            if key not in arrays:
                raise OutputsError(f"{source}: missing {key}")
            values = arrays[key]
            if values.dtype != np.float32 or values.shape != index.shape:
                raise OutputsError(
                    f"{source}: {key} must be float32 of shape {index.shape}, got "
                    f"{values.dtype} {values.shape}"
                )
            fields[kind][split] = values
        if f"logits_{split}" in arrays:
            logits = arrays[f"logits_{split}"]
            if logits.dtype != np.float16 or logits.ndim != 2 or logits.shape[0] != index.size:
                raise OutputsError(
                    f"{source}: logits_{split} must be float16 [{index.size}, classes], got "
                    f"{logits.dtype} {logits.shape}"
                )
            fields["logits"][split] = logits
    return RunOutputs(**fields, provenance=provenance, source=source)


def _check_against_aux(outputs: RunOutputs, aux: AuxArrays, source: str) -> None:
    for split in SPLITS:
        expected = getattr(aux, f"index_{split}")
        index = outputs.index.get(split)
        if index is None and expected.size == 0:
            continue
        if index is None or not np.array_equal(index, expected):
            raise OutputsError(f"{source}: index_{split} differs from {aux.source}'s")
        hinge = outputs.hinge_margin[split]
        correct = getattr(aux, f"correctness_{split}")
        disagree = int(np.count_nonzero(((hinge > 0) & ~correct) | ((hinge < 0) & correct)))
        if disagree:
            raise OutputsError(
                f"{source}: its hinge margins disagree with the correctness in {aux.source} on "
                f"{disagree} of {hinge.size} {split} examples (outputs of another model?)"
            )
