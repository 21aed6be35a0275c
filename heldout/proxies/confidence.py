"""Confidence proxies: the model's softmax on each training example, per epoch.

Definitions: `p_label` = softmax probability of the given label, `p_max` = largest
softmax probability, `entropy` = -sum_c p_c log p_c of the softmax; each at the final
epoch (`p_label`, ...) and averaged over the epochs (`p_label_mean`, ...).
"""

from __future__ import annotations

import numpy as np

from heldout.errors import UsageError

CONFIDENCE_KEYS = ("p_label", "p_label_mean", "p_max", "p_max_mean", "entropy", "entropy_mean")


def softmax_statistics(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per example, from logits [..., N, C] and labels [N]: the per-epoch statistics.

    Returns `correct` (bool), `loss` (cross-entropy), `p_label`, `p_max`, `entropy`
    (float32), each of the logits' leading shape. Computed from the log-softmax, so a
    confident wrong answer has a finite loss rather than log(0).
    """
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels)
    if logits.ndim < 2 or logits.shape[-2] != labels.size:
        raise UsageError(f"logits of shape {logits.shape} for {labels.size} labels")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    p = np.exp(log_p)
    log_p_label = np.take_along_axis(
        log_p, np.broadcast_to(labels[:, None], log_p.shape[:-1] + (1,)), axis=-1
    )[..., 0]
    return {
        "correct": np.argmax(logits, axis=-1) == labels,
        "loss": -log_p_label,
        "p_label": np.exp(log_p_label),
        "p_max": p.max(axis=-1),
        "entropy": -(p * log_p).sum(axis=-1),
    }


def _each_table(
    p_label: np.ndarray,
    p_max: np.ndarray,
    entropy: np.ndarray,
    final,
    mean,
    two_dimensional: bool = False,
) -> dict[str, np.ndarray]:
    """The six proxies: `final(table)` and `mean(table)` of each float64 table [E, N]."""
    out = {}
    for name, table in (("p_label", p_label), ("p_max", p_max), ("entropy", entropy)):
        table = np.asarray(table, dtype=np.float64)
        if two_dimensional and table.ndim != 2:
            raise UsageError(f"the {name} table must be [epochs, N], got shape {table.shape}")
        out[name] = final(table)
        out[name + "_mean"] = mean(table)
    return {key: out[key] for key in CONFIDENCE_KEYS}


def confidence_proxies(
    p_label: np.ndarray, p_max: np.ndarray, entropy: np.ndarray
) -> dict[str, np.ndarray]:
    """The six confidence proxies from per-epoch tables [E, N] (float64 [N] each)."""

    def final(table: np.ndarray) -> np.ndarray:
        return table[-1]

    def mean(table: np.ndarray) -> np.ndarray:
        return table.mean(axis=0)

    return _each_table(p_label, p_max, entropy, final, mean, two_dimensional=True)


def confidence_by_epoch(
    p_label: np.ndarray, p_max: np.ndarray, entropy: np.ndarray
) -> dict[str, np.ndarray]:
    """Each confidence proxy from the first e epochs, e = 1..E: arrays [E, N]."""

    def running_mean(table: np.ndarray) -> np.ndarray:
        return np.cumsum(table, axis=0) / np.arange(1, len(table) + 1)[:, None]

    return _each_table(p_label, p_max, entropy, lambda table: table, running_mean)
