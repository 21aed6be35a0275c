"""Mixed precision for the convolutional models: bfloat16 products, float32 everything else.

Inside `bfloat16_products()` every `snt.Conv2D` and `snt.Linear` computes its product in
bfloat16 and returns float32; weights, batch normalisation, loss, optimizer state and
checkpoints stay float32, and evaluation always runs in float32. The context applies to
the calling thread only, so other threads' models are untouched (docs/training.md).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from pathlib import Path

import sonnet as snt
import tensorflow as tf

from heldout.errors import TrainingError

COMPUTE_DTYPES = ("float32", "bfloat16")
_state = threading.local()
_install_lock = threading.Lock()
_installed = False


def _products_dtype() -> tf.DType | None:
    return getattr(_state, "dtype", None)


def _conv_in(module: snt.Conv2D, inputs: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """`snt.Conv2D.__call__` with the input and the variables in `dtype`."""
    x = tf.cast(inputs, dtype)
    if module.padding_func:
        x = tf.pad(x, module._padding)
    out = tf.nn.convolution(
        x,
        tf.cast(module.w, dtype),
        strides=module.stride,
        padding=module.conv_padding,
        dilations=module.rate,
        data_format=module.data_format,
    )
    if module.with_bias:
        out = tf.nn.bias_add(out, tf.cast(module.b, dtype), data_format=module.data_format)
    return out


def _linear_in(module: snt.Linear, inputs: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """`snt.Linear.__call__` with the input and the variables in `dtype`."""
    out = tf.matmul(tf.cast(inputs, dtype), tf.cast(module.w, dtype))
    if module.with_bias:
        out = tf.add(out, tf.cast(module.b, dtype))
    return out


def _wrap(original, product):
    @functools.wraps(original)
    def call(module, inputs, *args, **kwargs):
        dtype = _products_dtype()
        # Unbuilt modules create their (float32) variables through the original call.
        if dtype is None or args or kwargs or not module.variables:
            return original(module, inputs, *args, **kwargs)
        return tf.cast(product(module, inputs, dtype), inputs.dtype)

    call._heldout_original = original
    return call


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        snt.Conv2D.__call__ = _wrap(snt.Conv2D.__call__, _conv_in)
        snt.Linear.__call__ = _wrap(snt.Linear.__call__, _linear_in)
        _installed = True


@contextlib.contextmanager
def bfloat16_products(compute_dtype: str = "bfloat16"):
    """Runs the convolutions and dense products called inside in `compute_dtype`.

    Args:
      compute_dtype: `bfloat16`, or `float32` (then the context does nothing).

    Raises:
      TrainingError: an unknown dtype.
    """
    if compute_dtype not in COMPUTE_DTYPES:
        raise TrainingError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
    if compute_dtype == "float32":
        yield
        return
    _install()
    previous = _products_dtype()
    _state.dtype = tf.bfloat16
    try:
        yield
    finally:
        _state.dtype = previous


def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def bfloat16_support() -> tuple[bool, str]:
    """Whether the device TensorFlow will train on does bfloat16 products natively.

    Returns:
      (supported, the reason in words: the GPU's compute capability, or the CPU flags).
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = tuple(details.get("compute_capability") or (0, 0))
        name = details.get("device_name", "GPU")
        ok = capability >= (8, 0)
        return ok, f"{name}, compute capability {capability[0]}.{capability[1]}" + (
            "" if ok else " (bfloat16 needs 8.0 or later)"
        )
    flags = _cpu_flags() & {"avx512_bf16", "amx_bf16"}
    if flags:
        return True, f"CPU with {', '.join(sorted(flags))}"
    return False, "CPU without AVX512-BF16 or AMX (bfloat16 would be emulated, slower)"


def resolve_compute_dtype(requested: str) -> tuple[str, str]:
    """`auto` -> bfloat16 where the device supports it, else float32; others as given.

    The resolved name is what an experiment records (so a resume on another machine
    trains the same way, or is refused), never `auto`.

    Returns:
      (dtype name, why).

    Raises:
      TrainingError: an unknown name.
    """
    if requested == "auto":
        ok, why = bfloat16_support()
        return ("bfloat16" if ok else "float32"), why
    if requested not in COMPUTE_DTYPES:
        raise TrainingError(
            f"compute_dtype must be auto or one of {COMPUTE_DTYPES}, got {requested!r}"
        )
    return requested, "as requested"
