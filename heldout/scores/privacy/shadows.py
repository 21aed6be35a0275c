"""Per-example Gaussian fits of a statistic over shadow runs, each target left out exactly.

Every run is added once: per example, the count, sum and sum of squares over the runs that
trained on it (IN) and over all runs. A target's fits subtract its own contribution, so
run r is never among its own shadows and all targets cost one pass over the runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from heldout.errors import UsageError

__all__ = ["GaussianFits", "ShadowSums"]


@dataclasses.dataclass(frozen=True)
class GaussianFits:
    """IN and OUT fits of one target's shadows, per example (NaN where a count is 0).

    Attributes:
      mean_in, std_in, mean_out, std_out: float64 [n]; std with ddof = 0.
      count_in, count_out: int64 [n], the shadow runs behind each fit.
    """

    mean_in: np.ndarray
    std_in: np.ndarray
    count_in: np.ndarray
    mean_out: np.ndarray
    std_out: np.ndarray
    count_out: np.ndarray


def _mean_std(total: np.ndarray, squares: np.ndarray, count: np.ndarray, shift: np.ndarray):
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / count
        variance = np.maximum(squares / count - mean * mean, 0.0)
    return mean + shift, np.sqrt(variance)


class ShadowSums:
    """Sums over runs per example, IN and all, of a statistic shifted by the first run's.

    The shift (the first run's value of each example) keeps the sums of squares small
    where the statistic is far from 0, so E[x^2] - E[x]^2 loses no precision in float64.

    Args:
      num_train: the examples each run scores.
    """

    def __init__(self, num_train: int):
        self.num_train = int(num_train)
        self.num_runs = 0
        self.shift: np.ndarray | None = None
        self.count_in = np.zeros(self.num_train, dtype=np.int64)
        self.sum_in = np.zeros(self.num_train)
        self.squares_in = np.zeros(self.num_train)
        self.sum_all = np.zeros(self.num_train)
        self.squares_all = np.zeros(self.num_train)

    def _centred(self, mask: np.ndarray, statistic: np.ndarray):
        mask = np.asarray(mask, dtype=bool)
        statistic = np.asarray(statistic)
        if mask.shape != (self.num_train,) or statistic.shape != (self.num_train,):
            raise UsageError(
                f"a run's mask {mask.shape} and statistic {statistic.shape} do not fit "
                f"{self.num_train} examples"
            )
        if self.shift is None:
            self.shift = statistic.astype(np.float64)
        centred = statistic - self.shift
        return mask, centred, centred * centred

    def add(self, mask: np.ndarray, statistic: np.ndarray) -> None:
        """Adds one run: `mask` bool [n] (True: trained on), `statistic` float [n]."""
        mask, centred, squares = self._centred(mask, statistic)
        self.num_runs += 1
        self.count_in += mask
        self.sum_all += centred
        self.squares_all += squares
        self.sum_in += np.where(mask, centred, 0.0)
        self.squares_in += np.where(mask, squares, 0.0)

    def remove(self, mask: np.ndarray, statistic: np.ndarray) -> None:
        """Takes one added run out again (its arrays exactly as they were added)."""
        mask, centred, squares = self._centred(mask, statistic)
        self.num_runs -= 1
        self.count_in -= mask
        self.sum_all -= centred
        self.squares_all -= squares
        self.sum_in -= np.where(mask, centred, 0.0)
        self.squares_in -= np.where(mask, squares, 0.0)

    def fits(self) -> GaussianFits:
        """The IN and OUT fits of every example over the runs added (and not removed)."""
        count_out = self.num_runs - self.count_in
        mean_in, std_in = _mean_std(self.sum_in, self.squares_in, self.count_in, self.shift)
        mean_out, std_out = _mean_std(
            self.sum_all - self.sum_in, self.squares_all - self.squares_in, count_out, self.shift
        )
        return GaussianFits(mean_in, std_in, self.count_in.copy(), mean_out, std_out, count_out)

    def fits_without(self, mask: np.ndarray, statistic: np.ndarray) -> GaussianFits:
        """The IN and OUT fits of every example over all added runs but one, the target.

        Args:
          mask, statistic: the target run's, exactly as it was added.

        Returns:
          The `GaussianFits` of the other runs.

        Raises:
          UsageError: no run was added, or the target's arrays do not fit.
        """
        if self.num_runs < 1:
            raise UsageError("no run was added: the target must be among the added runs")
        mask, centred, squares = self._centred(mask, statistic)
        own_in = np.where(mask, centred, 0.0)
        own_in_squares = np.where(mask, squares, 0.0)
        count_in = self.count_in - mask
        count_out = (self.num_runs - 1) - count_in
        sum_in = self.sum_in - own_in
        squares_in = self.squares_in - own_in_squares
        sum_out = self.sum_all - self.sum_in - (centred - own_in)
        squares_out = self.squares_all - self.squares_in - (squares - own_in_squares)
        mean_in, std_in = _mean_std(sum_in, squares_in, count_in, self.shift)
        mean_out, std_out = _mean_std(sum_out, squares_out, count_out, self.shift)
        return GaussianFits(mean_in, std_in, count_in, mean_out, std_out, count_out)
