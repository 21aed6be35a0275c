"""Overlap of the lowest and highest scored examples of two score vectors, ties counted fairly.

C-scores are k/n fractions and pile up at exactly 0 and 1, so a cut at the top or bottom
1 % often falls inside a block of tied values. Each tied example is counted with its
probability of selection under random tie-breaking, never by its index (docs/methods.md).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from heldout.errors import CompareError
from heldout.published.format import checked_pair

EXTREME_FRACTIONS = (0.01, 0.1)  # the lowest / highest 1 % and 10 %
SIDES = ("lowest", "highest")


@dataclasses.dataclass(frozen=True)
class ExtremeOverlap:
    """How many of one side's lowest (or highest) examples are also the other side's.

    Attributes:
      fraction: the share of the compared examples taken (0.01 = 1 %).
      side: "lowest" or "highest".
      size: examples taken from each side, round(fraction * num_compared) (at least 1).
      overlap: the expected number of examples in both selections when ties at each cut
        are broken at random (an integer when no cut splits a block of ties).
      num_compared: examples defined on both sides (the pool they are taken from).
      chance: the expected overlap of a reference whose values are randomly permuted
        (the same ties): size**2 / num_compared.
      chance_sd: its standard deviation over such permutations.
      tied_ours, tied_reference: examples sharing the value at the cut when the cut
        splits them (only some taken); 0 when the cut falls between distinct values.
      cut_ours, cut_reference: the value at the cut on each side (NaN when nothing taken).
    """

    fraction: float
    side: str
    size: int
    overlap: float
    num_compared: int
    chance: float = float("nan")
    chance_sd: float = float("nan")
    tied_ours: int = 0
    tied_reference: int = 0
    cut_ours: float = float("nan")
    cut_reference: float = float("nan")

    @property
    def share(self) -> float:
        """`overlap / size`: the agreement."""
        return self.overlap / self.size if self.size else float("nan")

    @property
    def chance_share(self) -> float:
        """`chance / size` (= size / num_compared), the agreement of a random reference."""
        return self.chance / self.size if self.size else float("nan")

    @property
    def chance_share_sd(self) -> float:
        """`chance_sd / size`."""
        return self.chance_sd / self.size if self.size else float("nan")


@dataclasses.dataclass(frozen=True)
class _Selection:
    """Each example's probability of being taken, and the tied block the cut splits."""

    probability: np.ndarray
    tied: int
    cut: float


def _selection(values: np.ndarray, size: int, side: str) -> _Selection:
    """The `size` lowest (or highest) of `values`, ties at the cut taken at random."""
    if size == 0:
        return _Selection(np.zeros(values.size), 0, float("nan"))
    key = values if side == "lowest" else -values
    cut = np.partition(key, size - 1)[size - 1]
    below, at_cut = key < cut, key == cut
    num_tied = int(np.count_nonzero(at_cut))
    taken = size - int(np.count_nonzero(below))
    probability = below.astype(np.float64)
    probability[at_cut] = taken / num_tied
    cut_value = float(cut if side == "lowest" else -cut)
    return _Selection(probability, num_tied if taken < num_tied else 0, cut_value)


def _chance(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Mean and SD of sum_i ours[i] * reference[perm(i)] over uniform permutations."""
    n = ours.size
    if n == 0:
        return float("nan"), float("nan")
    mean = float(ours.sum() * reference.sum() / n)
    if n < 2:
        return mean, 0.0
    spread = np.sum((ours - ours.mean()) ** 2) * np.sum((reference - reference.mean()) ** 2)
    return mean, float(np.sqrt(spread / (n - 1)))


def extreme_overlaps(
    ours: np.ndarray, reference: np.ndarray, fractions=EXTREME_FRACTIONS
) -> list[ExtremeOverlap]:
    """Overlap of the lowest and of the highest `fractions` of two score vectors.

    The examples with the lowest C-scores are the atypical or mislabeled ones a user
    looks at, so agreement there matters more than a correlation over all examples.
    Only examples both sides define are ranked. Where a cut splits a block of tied
    values, each tied example counts with the share of the block that is taken, so the
    overlap is its expectation under random tie-breaking on both sides.

    Args:
      ours, reference: per-example scores [N], in the same example order (NaN skipped).
      fractions: shares of the compared examples to take at each end, in (0, 1].

    Returns:
      One `ExtremeOverlap` per fraction and side (lowest first), with the chance level.

    Raises:
      CompareError: the vectors are not 1-D, differ in length or are not numbers, or a
        fraction lies outside (0, 1].
    """
    ours, reference = checked_pair(ours, reference)
    both = ~np.isnan(ours) & ~np.isnan(reference)
    a, b = ours[both], reference[both]
    result = []
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise CompareError(f"fractions must lie in (0, 1], got {fraction}")
        size = max(1, int(round(fraction * a.size))) if a.size else 0
        for side in SIDES:
            mine, theirs = _selection(a, size, side), _selection(b, size, side)
            chance, chance_sd = _chance(mine.probability, theirs.probability)
            result.append(
                ExtremeOverlap(
                    fraction=fraction,
                    side=side,
                    size=size,
                    overlap=float(np.dot(mine.probability, theirs.probability)),
                    num_compared=int(a.size),
                    chance=chance,
                    chance_sd=chance_sd,
                    tied_ours=mine.tied,
                    tied_reference=theirs.tied,
                    cut_ours=mine.cut,
                    cut_reference=theirs.cut,
                )
            )
    return result
