"""Kernel-density proxies over every pair of training examples, tiled: never N x N in memory.

Definitions (Jiang, Zhang, Talwar, Mozer, Section 4): `pm_label`, `label` and `unlabeled`
densities with K(x, x') = exp(-||x - x'||^2 / h^2), h half the mean pairwise distance,
self term excluded (docs/methods.md). Two passes over the upper triangle of the pair
matrix in blocks; float32 GEMMs, float64 sums.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from heldout.errors import UsageError

KDE_VARIANTS = ("pm_label", "label", "unlabeled")
DEFAULT_BLOCK = 4096


def _prepared(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows as GEMM operands whose product is the squared distances.

    Centred (distances unchanged, norms small against float32's precision), then
    augmented: A = [x, |x|^2, 1] and B = [-2 x, 1, |x|^2], so that A_i . B_j =
    |x_i|^2 + |x_j|^2 - 2 x_i . x_j in one float32 GEMM, with no element-wise pass to add
    the norms.
    """
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] < 2:
        raise UsageError(f"the KDE needs at least 2 examples as rows, got shape {x.shape}")
    x = x.reshape(x.shape[0], -1)
    mean = x.mean(axis=0, dtype=np.float64)
    centred = (x - mean).astype(np.float32)
    norms = np.einsum("ij,ij->i", centred, centred, dtype=np.float64).astype(np.float32)
    ones = np.ones_like(norms)
    a = np.concatenate([centred, norms[:, None], ones[:, None]], axis=1)
    b = np.concatenate([-2.0 * centred, ones[:, None], norms[:, None]], axis=1)
    return a, b


def _blocks(n: int, block: int) -> Iterator[tuple[slice, slice]]:
    """The upper-triangle blocks (a <= b) of an n x n matrix."""
    starts = range(0, n, block)
    for a in starts:
        for b in starts:
            if b >= a:
                yield slice(a, min(a + block, n)), slice(b, min(b + block, n))


def _squared_distances(a, b, rows: slice, cols: slice, scale: float = 1.0) -> np.ndarray:
    """float32 [rows, cols] squared distances times `scale`, rounded away from the wrong sign.

    A negative `scale` (the kernel's -1/h^2) is folded into the B operand, so the product
    is already scaled; rounding can leave tiny values of the wrong sign, clipped to 0.
    """
    right = b[cols] if scale == 1.0 else b[cols] * np.float32(scale)
    d2 = a[rows] @ right.T
    if scale >= 0:
        np.maximum(d2, 0.0, out=d2)
    else:
        np.minimum(d2, 0.0, out=d2)
    if rows == cols:
        np.fill_diagonal(d2, 0.0)
    return d2


def _check_block(block: int) -> int:
    if int(block) < 1:
        raise UsageError(f"block must be at least 1, got {block}")
    return int(block)


def _bandwidth_prepared(a: np.ndarray, b: np.ndarray, block: int) -> float:
    n = a.shape[0]
    total = 0.0
    for rows, cols in _blocks(n, block):
        d = _squared_distances(a, b, rows, cols)
        np.sqrt(d, out=d)
        s = float(d.sum(dtype=np.float64))
        # A diagonal block holds each of its pairs twice (and zeros on the diagonal).
        total += s / 2.0 if rows == cols else s
    mean = total / (n * (n - 1) / 2.0)
    return 0.5 * mean


def kde_bandwidth(x: np.ndarray, block: int = DEFAULT_BLOCK) -> float:
    """h = 1/2 x the mean Euclidean distance over all pairs i != j of the rows of `x`.

    Args:
      x: [N, ...] examples (flattened to rows).
      block: rows per tile.

    Raises:
      UsageError: fewer than 2 examples.
    """
    a, b = _prepared(x)
    return _bandwidth_prepared(a, b, _check_block(block))


def kde_proxies(
    x: np.ndarray,
    labels: np.ndarray,
    num_classes: int | None = None,
    bandwidth: float | None = None,
    block: int = DEFAULT_BLOCK,
) -> tuple[dict[str, np.ndarray], float]:
    """The three density proxies of the module docstring, and the bandwidth used.

    Args:
      x: [N, ...] the examples in the representation (pixels in [0, 1], or features).
      labels: int [N], the given labels.
      num_classes: C; default labels.max() + 1.
      bandwidth: h; default the definition's (1/2 the mean pairwise distance, exact).
      block: rows per tile: memory is about 3 x block^2 float32 values.

    Returns:
      ({"pm_label", "label", "unlabeled"} float64 [N] each, h).

    Raises:
      UsageError: fewer than 2 examples, labels of another length, or h not positive.
    """
    block = _check_block(block)
    a, b = _prepared(x)
    n = a.shape[0]
    labels = np.asarray(labels).astype(np.int64)
    if labels.shape != (n,):
        raise UsageError(f"{labels.size} labels for {n} examples")
    classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if labels.min() < 0 or labels.max() >= classes:
        raise UsageError(f"labels must lie in 0..{classes - 1}")
    h = _bandwidth_prepared(a, b, block) if bandwidth is None else float(bandwidth)
    if not h > 0 or not math.isfinite(h):
        raise UsageError(
            f"the KDE bandwidth must be positive and finite, got {h} (all examples equal?)"
        )
    onehot = np.zeros((n, classes), np.float32)
    onehot[np.arange(n), labels] = 1.0
    sums = np.zeros((n, classes), np.float64)
    scale = -1.0 / (h * h)
    for rows, cols in _blocks(n, block):
        k = _squared_distances(a, b, rows, cols, scale)
        np.exp(k, out=k)
        if rows == cols:
            np.fill_diagonal(k, 0.0)  # the self term is excluded
            sums[rows] += k @ onehot[cols]
        else:
            sums[rows] += k @ onehot[cols]
            sums[cols] += k.T @ onehot[rows]
    label = sums[np.arange(n), labels] / n
    unlabeled = sums.sum(axis=1) / n
    return {"pm_label": 2.0 * label - unlabeled, "label": label, "unlabeled": unlabeled}, h


def kde_direct(
    x: np.ndarray, labels: np.ndarray, bandwidth: float | None = None
) -> tuple[dict[str, np.ndarray], float]:
    """The same proxies from the full N x N matrix in float64: the reference for tests."""
    x = np.asarray(x, dtype=np.float64).reshape(len(labels), -1)
    labels = np.asarray(labels)
    n = x.shape[0]
    d = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0.0))
    off = ~np.eye(n, dtype=bool)
    h = 0.5 * d[off].mean() if bandwidth is None else float(bandwidth)
    k = np.exp(-(d**2) / h**2) * off
    same = labels[:, None] == labels[None, :]
    return {
        "pm_label": (k * np.where(same, 1.0, -1.0)).sum(0) / n,
        "label": (k * same).sum(0) / n,
        "unlabeled": k.sum(0) / n,
    }, h
