"""Runs packed along the run axis: 64 runs' 0/1 values of one example in one machine word.

Influence needs, for every pair of a test and a training example, how many runs had both
values 1: `sum_r T[r, t] M[r, j]`. With each example's values over runs packed into words
(bit `r % 64` of word `r // 64` is run r), that count is `popcount(T_t & M_j)` summed over
R / 64 words: 64 binary multiply-adds in one AND and one POPCNT (`heldout.scores.backends.popcount`).

`RunBits` collects runs one at a time into such words, laid out as word planes
`uint64 [W, size]` (plane w holds runs 64w..64w+63 of every example), so a kernel reads
one plane's words for consecutive examples contiguously. Runs arrive one at a time (a
row over all examples) and the words hold one example's runs (a column over runs): the
transposition happens 8 runs at a time in a byte plane (one shift and one OR per run),
written into its byte of the words once 8 runs are in. numpy only: no compiler needed.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 64
# The backends' numerator R * S - c * n_in is at most R^2 in magnitude: an exact int32 up
# to 46 340 runs (per ratio: the release has a few thousand).
MAX_EXACT_RUNS = 46340
# Kernels consume words four at a time; planes beyond the last run stay zero, which adds
# nothing to any count.
PLANE_GROUP = 4


class RunBits:
    """0/1 values of `size` examples over runs, packed 64 runs to a word.

    Args:
      size: examples per run.
      capacity_runs: runs to allocate room for at first; the planes double when full.
    """

    def __init__(self, size: int, capacity_runs: int = 256):
        self.size = size
        self.num_runs = 0
        planes = max(PLANE_GROUP, -(-capacity_runs // WORD_BITS))
        planes = -(-planes // PLANE_GROUP) * PLANE_GROUP
        self._planes = np.zeros((planes, size), dtype=np.uint64)
        self._byte_plane = np.zeros(size, dtype=np.uint8)  # the current 8 runs
        self._shifted = np.empty(size, dtype=np.uint8)

    def append(self, values: np.ndarray) -> None:
        """Adds one run: bool [size] (proper 0/1 bools, as numpy makes them)."""
        if values.shape != (self.size,) or values.dtype != np.bool_:
            raise ValueError(f"expected bool [{self.size}], got {values.dtype} {values.shape}")
        bit = self.num_runs % 8
        if bit == 0:
            np.copyto(self._byte_plane, values.view(np.uint8))
        else:
            np.left_shift(values.view(np.uint8), bit, out=self._shifted)
            np.bitwise_or(self._byte_plane, self._shifted, out=self._byte_plane)
        self.num_runs += 1
        if bit == 7:
            self._store_byte_plane(self.num_runs // 8 - 1)

    def _store_byte_plane(self, byte: int) -> None:
        """Writes the byte plane of runs 8b..8b+7 (b = `byte`) into byte b % 8 of plane b // 8."""
        plane = byte // 8
        if plane >= len(self._planes):
            grown = np.zeros((2 * len(self._planes), self.size), dtype=np.uint64)
            grown[: len(self._planes)] = self._planes
            self._planes = grown
        # Little-endian words: byte k of a word is bits 8k..8k+7 (runs 8k..8k+7 of it).
        as_bytes = self._planes[plane].view(np.uint8).reshape(self.size, 8)
        as_bytes[:, _byte_in_word(byte % 8)] = self._byte_plane

    def planes(self) -> np.ndarray:
        """uint64 [W, size]: every run so far, W a multiple of `PLANE_GROUP` (zero padded).

        The runs not yet stored (fewer than 8 since the last store) are stored first, so
        further appends continue where they left off.
        """
        if self.num_runs % 8:
            # Store the partial byte plane now; it keeps its bits, so the append that
            # completes it stores it again, whole.
            self._store_byte_plane(self.num_runs // 8)
        used = -(-self.num_runs // WORD_BITS)
        used = max(PLANE_GROUP, -(-used // PLANE_GROUP) * PLANE_GROUP)
        if used > len(self._planes):  # only when num_runs is 0
            return np.zeros((used, self.size), dtype=np.uint64)
        return self._planes[:used]

    def unpacked(self) -> np.ndarray:
        """bool [num_runs, size]: the runs as given (for tests and small problems)."""
        planes = self.planes()
        as_bytes = planes.view(np.uint8).reshape(len(planes), self.size, 8)
        bits = np.unpackbits(as_bytes, axis=2, bitorder="little")  # [W, size, 64]
        return bits.transpose(0, 2, 1).reshape(-1, self.size)[: self.num_runs].astype(bool)


def _byte_in_word(k: int) -> int:
    """Position of a word's k-th least significant byte in memory."""
    return k if np.little_endian else 7 - k
