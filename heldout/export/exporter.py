"""Exporting one checkpoint: `Exporter` (one model, restored per run), `export_run`.

A folder is written as a whole (a temporary folder renamed into place), so a crash leaves
either no export or a complete one; an existing export of the same checkpoint is kept
(resuming), one of another checkpoint is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from heldout._core.atomic import commit_dir, make_temp_dir, write_json_atomic
from heldout._core.provenance import TOOLKIT_VERSION, file_identity, provenance_for
from heldout._core.write_safety import ensure_dir
from heldout.errors import CheckpointError, ModelError, StaleResultError, UsageError
from heldout.export.format import (
    EXPORT_FORMATS,
    FORMAT,
    FORMAT_VERSION,
    JSON_FILE,
    LAYOUT,
    ONNX_FILE,
    PREPROCESSING,
    SAFETENSORS_FILE,
    TMP_PREFIX,
    TOLERANCE,
    VALUE_SUFFIX,
    ExportedModel,
    ExportResult,
)
from heldout.export.forward import numpy_forward
from heldout.export.onnx import export_onnx, onnx_forward
from heldout.export.safetensors import (
    batch_norm_epsilon,
    file_sha256,
    model_tensors,
    write_safetensors,
)


def _arch_from_checkpoint(shapes: dict[str, list[int]], prefix: Path) -> tuple[str, int]:
    """(architecture, classes) a checkpoint's variables say; MLP hidden sizes included."""
    from heldout.models.checkpoint_keys import checkpoint_arch, checkpoint_num_classes
    from heldout.models.naming import mlp_arch

    arch, classes = checkpoint_arch(shapes), checkpoint_num_classes(shapes)
    if arch is None or classes is None:
        raise CheckpointError(
            f"{prefix}: cannot tell the architecture from its variables; pass arch= and "
            "num_classes="
        )
    if arch == "mlp":
        sizes, k = [], 1
        while f"model/hidden{k}/b{VALUE_SUFFIX}" in shapes:
            sizes.append(int(shapes[f"model/hidden{k}/b{VALUE_SUFFIX}"][0]))
            k += 1
        arch = mlp_arch(sizes)
    return arch, classes


class Exporter:
    """Exports checkpoints of one architecture: the model is built once, restored per run.

    Args:
      arch, num_classes: the architecture (`heldout.models`), e.g. "small_inception", 10.
      formats: any of `EXPORT_FORMATS`; "safetensors" is always written.
      check: after writing, run `numpy_forward` (and onnxruntime for ONNX) on a probe batch
        and refuse the export unless its logits equal TensorFlow's within `TOLERANCE`.
      probe_images: the probe batch [B, H, W, C] (default: 2 uniform [0, 1) images of the
        architecture's input shape, seed 0).
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        formats: Iterable[str] = ("safetensors",),
        check: bool = True,
        probe_images: np.ndarray | None = None,
    ):
        from heldout import models
        from heldout.models.checkpoints import RestoreTarget

        self.formats = check_formats(formats)
        self.arch = models.canonical_arch(arch)
        self.num_classes = int(num_classes)
        self.model = models.build_model(self.arch, self.num_classes)
        self.target = RestoreTarget(self.model)
        self.epsilon = batch_norm_epsilon(self.model)
        base = "mlp" if self.arch.startswith("mlp") else self.arch
        self.preprocessing = PREPROCESSING[base]
        self.check = check
        shape = tuple(self.preprocessing["image_shape"])
        if probe_images is None:
            probe_images = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
        self.probe_images = np.asarray(probe_images, dtype=np.float32)

    def meta(self, source: dict, info) -> dict:
        """The `model.json` of a restored checkpoint (without its checks and files yet)."""
        versions = {"heldout": TOOLKIT_VERSION}
        for module in ("tensorflow", "safetensors", "numpy"):
            versions[module] = _version_of(module)
        # The one provenance builder; a resume compares `source` only (`_existing`).
        meta = provenance_for(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            arch=self.arch,
            num_classes=self.num_classes,
            batch_norm_epsilon=self.epsilon,
            input=self.preprocessing,
            output="logits float32 [B, num_classes]; the prediction is their argmax",
            layout={**LAYOUT, "padding": LAYOUT["padding"].get(self.arch, "none")},
            source=source,
            epoch=info.epoch,
            global_step=info.global_step,
            versions=versions,
        )
        if self.arch.startswith("mlp"):
            meta["hidden_sizes"] = list(self.model.hidden_sizes)
        return meta

    def _tf_logits(self, images: np.ndarray) -> np.ndarray:
        return self.model(images, is_training=False).numpy()

    def write(self, checkpoint: str | os.PathLike, folder: Path, source: dict) -> dict:
        """Restores `checkpoint` and writes the export into `folder`; returns the checks."""
        info = self.target.restore(checkpoint)
        tensors = model_tensors(self.model)
        meta = self.meta(source, info)
        checks: dict[str, Any] = {}
        written = [folder / SAFETENSORS_FILE]
        write_safetensors(written[0], tensors, {"format": FORMAT, "arch": self.arch})
        reference = self._tf_logits(self.probe_images) if self.check else None
        if self.check:
            ours = numpy_forward(ExportedModel(tensors, meta, folder), self.probe_images)
            checks["numpy_vs_tensorflow_max_abs"] = _check_close(ours, reference, "numpy", folder)
        if "onnx" in self.formats:
            written.append(folder / ONNX_FILE)
            export_onnx(self.model, written[-1], self.probe_images.shape[1:])
            if self.check:
                ours = onnx_forward(written[-1], self.probe_images)
                checks["onnx_vs_tensorflow_max_abs"] = _check_close(ours, reference, "ONNX", folder)
        if self.check:
            checks["probe"] = f"{len(self.probe_images)} images {list(self.probe_images.shape[1:])}"
        meta["checks"] = checks
        meta["files"] = {
            f.name: {"sha256": file_sha256(f), "size": f.stat().st_size} for f in written
        }
        write_json_atomic(folder / JSON_FILE, meta)
        return checks


def _version_of(module: str) -> str | None:
    from importlib import metadata

    names = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "safetensors": ("safetensors",)}
    for name in names.get(module, (module,)):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _check_close(ours: np.ndarray, reference: np.ndarray, what: str, folder: Path) -> float:
    """The max abs difference; refused above TOLERANCE times the logits' scale (>= 1).

    TensorFlow computes in float32, whose own rounding grows with the logits' magnitude
    (and with depth: ~1e-4 for a ResNet-50 with logits of a few units), so large logits
    get a proportionally larger allowance; any real export error is orders larger.
    """
    difference = float(np.max(np.abs(ours.astype(np.float64) - reference)))
    allowed = TOLERANCE * max(1.0, float(np.max(np.abs(reference))))
    if not difference <= allowed:  # also refuses NaN
        raise ModelError(
            f"{folder}: the {what} logits differ from TensorFlow's by up to {difference:.3g} "
            f"(allowed {allowed:.3g}); the export is not faithful, please report"
        )
    return difference


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """The export formats, checked (safetensors always included).

    Raises:
      UsageError: an unknown format.
    """
    chosen = {f.strip().lower() for f in formats if f.strip()}
    unknown = sorted(chosen - set(EXPORT_FORMATS))
    if unknown:
        raise UsageError(f"unknown export format(s) {unknown}; choose from {list(EXPORT_FORMATS)}")
    return tuple(f for f in EXPORT_FORMATS if f in chosen | {"safetensors"})


def checkpoint_source(checkpoint: str | os.PathLike, **fields) -> tuple[Path, dict]:
    """(checkpoint prefix, what an export of it is a result of: files, sizes, mtimes)."""
    from heldout.models.checkpoints import checkpoint_files, find_checkpoint

    prefix = find_checkpoint(checkpoint)
    source = {
        "checkpoint": str(prefix.absolute()),
        "checkpoint_files": [file_identity(f) for f in checkpoint_files(prefix)],
        **fields,
    }
    return prefix, source


def _existing(folder: Path, source: dict, formats: tuple[str, ...]) -> bool:
    """True when `folder` holds a complete export of the same source in these formats.

    Raises:
      StaleResultError: `folder` holds something else (another checkpoint's export, or
        files that are not an export); it is never replaced silently.
    """
    json_path = folder / JSON_FILE
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return False
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, ValueError):
        raise StaleResultError(
            f"{folder}: exists and is not a complete export ({JSON_FILE} missing or "
            "unreadable); remove it or choose another output folder"
        ) from None
    recorded = meta.get("source", {})
    if recorded.get("checkpoint_files") != source["checkpoint_files"]:
        raise StaleResultError(
            f"{folder}: holds an export of {recorded.get('checkpoint', 'another checkpoint')} "
            f"(files, sizes or mtimes differ from {source['checkpoint']}); remove it or "
            "choose another output folder"
        )
    missing = [f for f in formats if _FORMAT_FILES[f] not in meta.get("files", {})]
    if missing:
        raise StaleResultError(
            f"{folder}: the export of this checkpoint lacks {missing}; remove the folder to "
            "export it again with them"
        )
    return True


_FORMAT_FILES = {"safetensors": SAFETENSORS_FILE, "onnx": ONNX_FILE}


def export_checkpoint(
    exporter: Exporter, checkpoint: str | os.PathLike, output_dir: str | os.PathLike, **fields
) -> ExportResult:
    """Exports one checkpoint into `output_dir` as a whole (temporary folder, renamed).

    Args:
      exporter: built for the checkpoint's architecture.
      checkpoint: a run folder, its `checkpoints/`, a prefix or an `.index`.
      output_dir: the export folder (must not exist, be empty, or hold an export of the
        same checkpoint files, which is kept).
      fields: recorded in `model.json`'s `source` (e.g. the run and its subset ratio).

    Returns:
      The `ExportResult` (`reused` when an export of the same checkpoint was kept).

    Raises:
      StaleResultError: `output_dir` holds something else.
      CheckpointError: the checkpoint does not fit the exporter's model.
      ModelError: the export's logits differ from TensorFlow's.
    """
    output_dir = Path(output_dir).absolute()
    prefix, source = checkpoint_source(checkpoint, **fields)
    if _existing(output_dir, source, exporter.formats):
        files = tuple(output_dir / _FORMAT_FILES[f] for f in exporter.formats)
        return ExportResult(output_dir, (*files, output_dir / JSON_FILE), True, {})
    ensure_dir(output_dir.parent)
    tmp = make_temp_dir(output_dir.parent, f"{TMP_PREFIX}{output_dir.name}-")
    try:
        checks = exporter.write(prefix, tmp, source)
        if output_dir.is_dir():
            output_dir.rmdir()  # empty (checked above): rename onto it would fail on some OSes
        commit_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = tuple(output_dir / _FORMAT_FILES[f] for f in exporter.formats)
    return ExportResult(output_dir, (*files, output_dir / JSON_FILE), False, checks)


def export_run(
    run_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    arch: str | None = None,
    num_classes: int | None = None,
    formats: Iterable[str] = ("safetensors",),
    check: bool = True,
    probe_images: np.ndarray | None = None,
) -> ExportResult:
    """Exports one run's checkpoint (architecture from its variables unless given).

    Args:
      run_dir: the run folder (or its `checkpoints/`, a prefix or an `.index`).
      output_dir: the export folder: must not exist, be empty, or hold an export of the
        same checkpoint files (then it is kept: resuming).
      arch, num_classes: the model (`heldout.models`); None: read from the checkpoint's
        variables (MLP hidden sizes included).
      formats: any of `EXPORT_FORMATS`; safetensors is always written.
      check: compare the export's logits with TensorFlow's on `probe_images` and refuse
        an unfaithful export (see `Exporter`).
      probe_images: the inputs of that check (default: 2 random images).

    Returns:
      The `ExportResult`: the folder, its files, whether an existing export was kept,
      and the logit differences measured.

    Raises:
      CheckpointError: no single checkpoint in `run_dir`, an architecture that cannot be
        told from it, or a checkpoint that does not fit the model.
      StaleResultError: `output_dir` holds something else.
      ModelError: the export's logits differ from TensorFlow's.
      UsageError: an unknown format, or ONNX asked without tf2onnx / onnxruntime.
    """
    from heldout.models.checkpoints import find_checkpoint, read_variable_shapes

    prefix = find_checkpoint(run_dir)
    if arch is None or num_classes is None:
        shapes, _ = read_variable_shapes(prefix)
        found_arch, found_classes = _arch_from_checkpoint(shapes, prefix)
        arch, num_classes = arch or found_arch, num_classes or found_classes
    exporter = Exporter(arch, num_classes, formats, check, probe_images)
    return export_checkpoint(exporter, prefix, output_dir, run=str(Path(run_dir).absolute()))
