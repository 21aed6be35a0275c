"""The papers' per-class analyses of C-scores, as numbers (figures: `heldout.plots.analysis`).

Jiang et al. (ICML 2021, Figures 6-7) rank ImageNet classes by their mean C-score: the
most regular classes have high means and little spread, the least regular low means
and much spread, so class mean and standard deviation are strongly anti-correlated (on
the published CIFAR-10 scores r = -0.96 over the 10 classes). No TensorFlow.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from heldout.errors import ScoresError


@dataclasses.dataclass(frozen=True)
class ClassStatistics:
    """Per-class mean and standard deviation of a per-example score.

    Attributes:
      labels: int64 [C], the classes with at least one defined score, ascending.
      counts: int64 [C], examples with a defined (non-NaN) score per class.
      mean, std: float64 [C]; `std` is the population SD (ddof 0), NaN for one example.
      num_examples: examples with a defined score, all classes together.
      num_undefined: examples left out because their score is NaN.
    """

    labels: np.ndarray
    counts: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    num_examples: int
    num_undefined: int

    @property
    def mean_std_correlation(self) -> float:
        """Pearson r between class means and class SDs (NaN with fewer than 3 classes)."""
        defined = ~np.isnan(self.std)
        if defined.sum() < 3:
            return float("nan")
        return float(np.corrcoef(self.mean[defined], self.std[defined])[0, 1])

    def ranked(self) -> np.ndarray:
        """Class positions (into `labels`) from the most regular (highest mean) down."""
        return np.lexsort((self.labels, -self.mean))


def class_statistics(
    scores: np.ndarray, labels: np.ndarray, source: str = "the scores"
) -> ClassStatistics:
    """Mean and SD of `scores` within each class; NaN scores are left out and counted.

    Args:
      scores: float [N] (e.g. integral C-scores), NaN where undefined.
      labels: int [N], in the same example order.
      source: the file the scores come from, named by the infinite-value error.

    Raises:
      ScoresError: shapes differ, labels are not integers, a score is infinite, or no
        score is defined.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ScoresError(
            f"scores and labels must be 1-D and equally long, got {scores.shape} and "
            f"{labels.shape}; are they of the same split and order?"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ScoresError(f"labels must be integers, got {labels.dtype}")
    infinite = np.flatnonzero(np.isinf(scores))
    if infinite.size:  # one infinity makes its class mean infinite and its SD NaN
        raise ScoresError(
            f"{source}: {infinite.size} score(s) are infinite, e.g. at "
            f"{infinite[:5].tolist()}; a score is a finite number (NaN: undefined)"
        )
    defined = ~np.isnan(scores)
    if not defined.any():
        raise ScoresError("no example has a defined score")
    classes, inverse = np.unique(labels[defined], return_inverse=True)
    counts = np.bincount(inverse, minlength=classes.size)
    sums = np.bincount(inverse, weights=scores[defined], minlength=classes.size)
    mean = sums / counts
    squares = np.bincount(
        inverse, weights=(scores[defined] - mean[inverse]) ** 2, minlength=classes.size
    )
    std = np.sqrt(squares / counts)
    std[counts < 2] = np.nan
    return ClassStatistics(
        labels=classes.astype(np.int64),
        counts=counts.astype(np.int64),
        mean=mean,
        std=std,
        num_examples=int(defined.sum()),
        num_undefined=int((~defined).sum()),
    )


__all__ = ["ClassStatistics", "class_statistics"]
