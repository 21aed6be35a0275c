"""The attack scores of one target run, members scoring high: online and offline LiRA
(Carlini et al. 2022) from the shadows' Gaussian fits, and the loss threshold (Yeom et al.).

An example whose shadows are too few (IN or OUT below `min_shadows`; OUT alone offline)
gets NaN, never 0. A standard deviation below `STD_FLOOR` is raised to it, so a statistic
constant over the shadows (0/1 correctness) still gives a finite, ordered score.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr

from heldout.scores.privacy.shadows import GaussianFits

__all__ = [
    "CORRECTNESS",
    "MARGIN",
    "STATISTICS",
    "STD_FLOOR",
    "gaussian_log_pdf",
    "lira_offline",
    "lira_online",
    "loss_threshold",
]

MARGIN = "margin"  # phi = logit margin z_y - logsumexp_{k != y} z_k (outputs.npz)
CORRECTNESS = "correctness"  # phi = 0/1 correctness (aux arrays): the weaker variant
STATISTICS = (MARGIN, CORRECTNESS)
STD_FLOOR = 1e-6
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_pdf(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """log N(x; mean, std^2), elementwise (float64)."""
    z = (np.asarray(x, dtype=np.float64) - mean) / std
    return -0.5 * z * z - np.log(std) - _LOG_SQRT_2PI


def _std(std: np.ndarray, defined: np.ndarray, fix_variance: bool) -> np.ndarray:
    """The per-example std, or with `fix_variance` one global std for every example: the
    median over the examples with enough shadows (robust to the few with huge spreads)."""
    if fix_variance:
        values = std[defined]
        value = float(np.median(values)) if values.size else math.nan
        std = np.full(std.shape, value)
    return np.maximum(std, STD_FLOOR)


def lira_online(
    statistic: np.ndarray, fits: GaussianFits, min_shadows: int = 4, fix_variance: bool = False
) -> np.ndarray:
    """log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out) per example.

    Args:
      statistic: float [n], the target run's phi.
      fits: the target's shadow fits (`ShadowSums.fits_without`).
      min_shadows: fewer IN or OUT shadows than this give NaN.
      fix_variance: one global std per side instead of each example's own.

    Returns:
      float64 [n]; NaN where the shadows are too few.
    """
    defined = (fits.count_in >= min_shadows) & (fits.count_out >= min_shadows)
    std_in = _std(fits.std_in, defined, fix_variance)
    std_out = _std(fits.std_out, defined, fix_variance)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = gaussian_log_pdf(statistic, fits.mean_in, std_in) - gaussian_log_pdf(
            statistic, fits.mean_out, std_out
        )
    score[~defined] = np.nan
    return score


def lira_offline(
    statistic: np.ndarray, fits: GaussianFits, min_shadows: int = 4, fix_variance: bool = False
) -> np.ndarray:
    """-log P(Z > phi), Z ~ N(mu_out, s_out): OUT shadows only, one-sided.

    The same order as the paper's 1 - P(Z > phi) (the CDF), but in log form: members sit
    in the upper tail, where the CDF rounds to 1 and the log keeps them apart.

    Args:
      statistic, fits, min_shadows, fix_variance: as `lira_online`; only OUT counts.

    Returns:
      float64 [n], >= 0; NaN where fewer than `min_shadows` OUT shadows.
    """
    defined = fits.count_out >= min_shadows
    std_out = _std(fits.std_out, defined, fix_variance)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (np.asarray(statistic, dtype=np.float64) - fits.mean_out) / std_out
        score = -log_ndtr(-z)
    score[~defined] = np.nan
    return score


def loss_threshold(statistic: np.ndarray, statistic_kind: str = MARGIN) -> np.ndarray:
    """Yeom et al.'s score, minus the loss, one global threshold over it: members have a
    low loss. With the logit margin the cross-entropy loss is log(1 + e^-phi) (p_y is the
    sigmoid of phi); with 0/1 correctness the score is the correctness itself.

    Args:
      statistic: float [n], the target run's phi.
      statistic_kind: `MARGIN` or `CORRECTNESS`.

    Returns:
      float64 [n].
    """
    phi = np.asarray(statistic, dtype=np.float64)
    if statistic_kind == CORRECTNESS:
        return phi.copy()
    return -np.logaddexp(0.0, -phi)
