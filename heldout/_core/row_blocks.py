"""A large 2-D result computed block of rows by block of rows while it is written.

Why: a matrix of gigabytes written to an `.npz` at once costs, held whole in memory, its
own allocation (every page zeroed by the kernel, on a virtual machine often a fault on
the host too) and a copy into the page cache. Produced as blocks of rows that the writer
consumes one after another (`heldout._core.npz_direct_write.write_stored_npz`), the
result never exists whole: one block buffer is reused, and peak memory falls by the
matrix's size. It can be consumed once; `np.asarray` on an unconsumed one materializes it
(for any code that needs the array itself).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np


class RowBlocks:
    """A C-order 2-D array given as consecutive blocks of rows, produced once.

    Args:
      shape: (rows, columns).
      dtype: of every block.
      produce: returns an iterator of arrays [r_i, columns] whose rows, in order, are the
        array's; a block may be a reused buffer, valid until the next one is asked for.

    After `blocks()` has run to the end, `row_fmax` holds each row's largest non-NaN
    value (NaN for an all-NaN row), for summaries that would otherwise need the array.
    """

    ndim = 2

    def __init__(
        self,
        shape: tuple[int, int],
        dtype: np.dtype | type,
        produce: Callable[[], Iterator[np.ndarray]],
    ):
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self._produce = produce
        self._consumed = False
        self.row_fmax: np.ndarray | None = None

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def blocks(self) -> Iterator[np.ndarray]:
        """Yields the blocks in row order, each checked; can run once.

        Raises:
          ValueError: consumed before, or a block of the wrong shape, type or count.
        """
        if self._consumed:
            raise ValueError("these row blocks were already consumed (they are produced once)")
        self._consumed = True
        row_fmax = np.full(self.shape[0], np.nan, dtype=self.dtype)
        done = 0
        for block in self._produce():
            rows = block.shape[0]
            if (
                block.ndim != 2
                or block.shape[1] != self.shape[1]
                or block.dtype != self.dtype
                or not block.flags.c_contiguous
                or done + rows > self.shape[0]
            ):
                raise ValueError(
                    f"block {block.dtype} {block.shape} at row {done} does not fit a "
                    f"C-order {self.dtype} {self.shape} array"
                )
            if rows and self.shape[1]:
                row_fmax[done : done + rows] = np.fmax.reduce(block, axis=1)
            done += rows
            yield block
        if done != self.shape[0]:
            raise ValueError(f"the blocks held {done} rows of {self.shape[0]}")
        self.row_fmax = row_fmax

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)
        done = 0
        for block in self.blocks():
            out[done : done + block.shape[0]] = block
            done += block.shape[0]
        return out if dtype is None else out.astype(dtype, copy=False)
