"""Why a checkpoint does not fit a model: one message naming every offending variable.

Called by `heldout.models.checkpoints` before anything is assigned, so a wrong
architecture, class count, missing or extra variables, shape or dtype mismatches are all
reported at once, with what is likely wrong.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from heldout.models.build import arch_of
from heldout.models.checkpoint_keys import (
    EPOCH_KEY,
    GLOBAL_STEP_KEY,
    VALUE_SUFFIX,
    checkpoint_arch,
    checkpoint_num_classes,
)

MAX_LISTED = 12  # names listed in a message before "... and N more"


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _short(key: str) -> str:
    return key[: -len(VALUE_SUFFIX)] if key.endswith(VALUE_SUFFIX) else key


def _listing(title: str, items: list[str], limit: int = MAX_LISTED) -> str:
    shown = "\n".join(f"    {x}" for x in items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"  {title} ({len(items)}):\n{shown}{more}"


def _model_description(model: tf.Module) -> tuple[str | None, int | None]:
    arch = arch_of(model)
    return arch, getattr(model, "num_classes", None)


def diagnose(
    prefix: Path,
    model: tf.Module,
    ckpt_shapes: dict[str, list[int]],
    ckpt_dtypes: dict[str, tf.DType],
    expected: dict[str, tf.Variable],
) -> str | None:
    """An error message if the checkpoint does not fit the model exactly, else None."""
    ckpt_model_keys = {k for k in ckpt_shapes if k.startswith("model/")}
    missing = sorted(k for k in expected if k not in ckpt_shapes)
    extra = sorted(k for k in ckpt_model_keys if k not in expected)
    bad_shape = sorted(
        k
        for k in expected
        if k in ckpt_shapes and list(ckpt_shapes[k]) != list(expected[k].shape.as_list())
    )
    bad_dtype = sorted(
        k
        for k in expected
        if k in ckpt_dtypes and k not in bad_shape and ckpt_dtypes[k] != expected[k].dtype
    )
    counters = [k for k in (EPOCH_KEY, GLOBAL_STEP_KEY) if k not in ckpt_shapes]
    if not (missing or extra or bad_shape or bad_dtype or counters):
        return None

    model_arch, model_classes = _model_description(model)
    model_label = model_arch or type(model).__name__
    ck_arch = checkpoint_arch(ckpt_model_keys)
    ck_classes = checkpoint_num_classes(ckpt_shapes)

    likely = []
    wrong_arch = ck_arch is not None and model_arch is not None and ck_arch != model_arch
    limit = 4 if wrong_arch else MAX_LISTED  # the names say little more than the diagnosis
    if not ckpt_model_keys:
        likely.append(
            "the checkpoint has no model/... variables: it was not saved with "
            "tf.train.Checkpoint(model=...)"
        )
    elif wrong_arch:
        likely.append(
            f"wrong architecture: the checkpoint looks like {ck_arch}"
            + (f" with {ck_classes} classes" if ck_classes else "")
            + f", the model is {model_label}; build it with arch={ck_arch!r}"
        )
    elif ck_arch is None and ckpt_model_keys and model_arch is not None:
        likely.append(
            f"the checkpoint does not look like any known architecture; the model is {model_label}"
        )
    else:
        if ck_classes is not None and model_classes is not None and ck_classes != model_classes:
            likely.append(
                f"checkpoint has {ck_classes} classes, model built with {model_classes} "
                f"(build it with num_classes={ck_classes})"
            )
        if missing and not extra:
            likely.append(
                "the checkpoint lacks some of the model's variables (incomplete save, or a "
                "different variant of the architecture)"
            )
        if extra and not missing:
            likely.append(
                "the checkpoint has variables the model does not create (a different "
                "variant of the architecture)"
            )
        if bad_shape and model_arch == "mlp" and not (ck_classes and ck_classes != model_classes):
            likely.append("a different input size or hidden sizes than the model's")
    if counters:
        likely.append(
            "no " + " and no ".join(_short(k) for k in counters) + " counter: not saved as "
            "tf.train.Checkpoint(model=..., epoch=..., global_step=...)"
        )

    parts = [f"{prefix}: checkpoint does not match the {model_label} model"]
    if likely:
        parts[0] += ": " + "; ".join(likely)
    if missing:
        parts.append(
            _listing("model variables the checkpoint lacks", [_short(k) for k in missing], limit)
        )
    if extra:
        parts.append(
            _listing(
                "checkpoint variables the model does not have", [_short(k) for k in extra], limit
            )
        )
    if bad_shape:
        parts.append(
            _listing(
                "shape mismatches (checkpoint vs model)",
                [
                    f"{_short(k)}: {_shape_str(ckpt_shapes[k])} vs "
                    f"{_shape_str(expected[k].shape.as_list())}"
                    for k in bad_shape
                ],
            )
        )
    if bad_dtype:
        parts.append(
            _listing(
                "dtype mismatches (checkpoint vs model)",
                [
                    f"{_short(k)}: {ckpt_dtypes[k].name} vs {expected[k].dtype.name}"
                    for k in bad_dtype
                ],
            )
        )
    return "\n".join(parts)
