"""Read many runs' `aux_arrays.npz`, in order, checked against each other.

The score engine must not wait on the disk between thousands of runs: `read_runs` reads
in the calling thread while the kernel reads the next files ahead, or on reader threads
for slow network storage. Memory stays bounded, and runs come back in the order given.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from heldout._core.system import memory_available
from heldout.errors import InconsistentRunError
from heldout.release.aux_arrays import AuxArrays, AuxArraysError, load_aux_arrays
from heldout.release.layout import Run

RunLike = Run | str | os.PathLike
BadRunCallback = Callable[[RunLike, AuxArraysError], None]
ProgressCallback = Callable[[int, int], None]


class SplitSizeCheck:
    """Checks that every run agrees on N (training split) and N_test.

    With known sizes (the registry's for a released experiment, the recorded ones for an
    experiment trained here, or the majority over all runs: `majority_split_sizes`), every
    run is checked against them, so an odd run is the one reported whatever its position.
    Without, the first run seen sets the sizes: fine when any disagreement stops the read,
    wrong when bad runs are skipped (one odd first run would make every good run "bad").

    Args:
      num_train, num_test: the expected sizes, or None to take them from the first run.
      reference: what the expected sizes come from, for messages.
    """

    def __init__(
        self,
        num_train: int | None = None,
        num_test: int | None = None,
        reference: str | None = None,
    ):
        self.num_train = num_train
        self.num_test = num_test
        given = num_train is not None or num_test is not None
        self._reference = (reference or "the expected sizes") if given else None

    def check(self, aux: AuxArrays) -> None:
        if self._reference is None:
            self.num_train, self.num_test = aux.num_train, aux.num_test
            self._reference = aux.source
            return
        if (self.num_train is not None and aux.num_train != self.num_train) or (
            self.num_test is not None and aux.num_test != self.num_test
        ):
            raise InconsistentRunError(
                f"{aux.source}: has N={aux.num_train} training and N_test={aux.num_test} test "
                f"examples, but {self._reference} has N={self.num_train} and "
                f"N_test={self.num_test}; all runs of an experiment must agree"
            )


def _array_length(npz: zipfile.ZipFile, key: str) -> int:
    """The length of a 1-D array in an `.npz`, from its header alone (no data read)."""
    with npz.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(member)
    return int(np.prod(shape)) if shape else 1


def split_sizes_of(path: str | os.PathLike) -> tuple[int, int] | None:
    """(N, N_test) of one `aux_arrays.npz` from its array headers; None if unreadable."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None  # a FIFO would block the read; the full read names it
        with zipfile.ZipFile(path) as npz:
            num_train = _array_length(npz, "index_train") + _array_length(npz, "index_removed")
            return num_train, _array_length(npz, "index_test")
    except (
        OSError,
        ValueError,
        KeyError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        RuntimeError,  # zipfile: an encrypted member, a zip version it cannot read
    ):
        return None  # the full read reports what is wrong with it


def majority_split_sizes(runs: Iterable[RunLike], workers: int | None = None) -> SplitSizeCheck:
    """A check against the (N, N_test) most runs have, read from the files' headers.

    Cheap (a few hundred bytes per file), so `read_runs(..., skip_bad_runs=True)` can skip
    the odd runs instead of the good ones when nothing else says what the sizes are.

    Raises:
      InconsistentRunError: two sizes are tied for the most runs: nothing says which
        runs are the odd ones (the message names both groups and a file of each).
    """
    paths = [_aux_path(run) for run in runs]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aux-sizes") as pool:
        read = list(zip(paths, pool.map(split_sizes_of, paths), strict=True))
    sizes = [size for _, size in read if size is not None]
    if not sizes:
        return SplitSizeCheck()
    counts = collections.Counter(sizes)
    (num_train, num_test), agree = counts.most_common(1)[0]
    tied = [size for size, count in counts.items() if count == agree]
    if len(tied) > 1:
        example = {}
        for path, size in read:
            example.setdefault(size, path)
        groups = " and ".join(
            f"N={n}, N_test={n_test} ({agree} runs, e.g. {example[(n, n_test)]})"
            for n, n_test in tied
        )
        raise InconsistentRunError(
            f"{_common_folder(paths)}: the runs disagree on their split sizes and no "
            f"majority decides which are right: {groups}; record num_train and num_test in "
            "experiment.json, or remove the runs of the wrong experiment"
        )
    return SplitSizeCheck(
        num_train,
        num_test,
        reference=f"the majority of the runs ({agree} of {len(sizes)} readable runs)",
    )


def _common_folder(paths: list[Path]) -> str:
    """The folder all `paths` lie in (the experiment's), for naming it in an error."""
    try:
        return os.path.commonpath([os.path.abspath(path) for path in paths])
    except ValueError:  # paths on different drives (Windows)
        return str(paths[0].parent)


def _aux_path(item: RunLike) -> Path:
    return item.aux_path if isinstance(item, Run) else Path(item)


def check_subset_ratio(aux: AuxArrays, subset_ratio: float) -> None:
    """Raises unless the run trained on its folder's subset ratio of the examples.

    A run copied into another ratio's folder would change that ratio's scores; its own
    arrays show its ratio (`len(index_train) / N`). Rounding of `ratio * N` is allowed,
    and more for tiny splits: max(0.02, 2 / N).

    Raises:
      AuxArraysError: naming the file, its training fraction and the folder's ratio.
    """
    num_train = aux.num_train
    if num_train == 0:
        return
    trained = aux.index_train.size
    fraction = trained / num_train
    if abs(fraction - subset_ratio) > max(0.02, 2 / num_train):
        raise AuxArraysError(
            f"{aux.source}: the run trained on {trained} of {num_train} examples (fraction "
            f"{fraction:.4g}), but its folder is subset ratio {subset_ratio:g}; a run of "
            "another ratio (copied into the wrong folder?) would change the scores"
        )


def _expected_ratios(
    runs: list[RunLike], ratios: Sequence[float | None] | None
) -> list[float | None]:
    """The subset ratio each run must have: a `Run`'s own, else the one given for it."""
    if ratios is not None and len(ratios) != len(runs):
        raise ValueError(f"{len(ratios)} ratios given for {len(runs)} runs")
    return [
        run.subset_ratio if isinstance(run, Run) else (ratios[k] if ratios is not None else None)
        for k, run in enumerate(runs)
    ]


# An aux_arrays.npz holds 7 arrays of at most max(N, N_test) entries of at most 8 bytes; a
# file declaring 4 times that is refused before it is inflated (a run of another size
# below that is still reported as such, by the split-size check).
_AUX_BOUND_FACTOR = 4 * 7 * 8
_AUX_BOUND_SLACK = 1 << 20


def aux_load_bound(size_check: SplitSizeCheck) -> int | None:
    """The most bytes one run's arrays may declare: from the split sizes when both are
    known, else the memory available (None where unknown); checked before any array is
    allocated or inflated."""
    if size_check.num_train is None or size_check.num_test is None:
        return memory_available()
    return _AUX_BOUND_FACTOR * max(size_check.num_train, size_check.num_test) + _AUX_BOUND_SLACK


# Files the kernel is asked to read ahead of the calling thread (by default): a few MB for
# CIFAR-size runs, enough for a disk's latency to hide behind the work on each run.
READAHEAD_RUNS = 16


def read_runs(
    runs: Iterable[RunLike],
    *,
    workers: int | None = None,
    max_in_flight: int | None = None,
    skip_bad_runs: bool = False,
    on_bad_run: BadRunCallback | None = None,
    progress: bool | ProgressCallback = False,
    size_check: SplitSizeCheck | None = None,
    ratios: Sequence[float | None] | None = None,
) -> Iterator[tuple[RunLike, AuxArrays]]:
    """Yields `(run, aux)` for each run (a `Run` or a path to an `aux_arrays.npz`), in order.

    Args:
      runs: what to read; `Run`s or paths of `aux_arrays.npz` files.
      workers: None (default) reads in the calling thread, the kernel reading the next
        files ahead; N >= 1 reads on N threads (see the module docstring for when).
      max_in_flight: with threads, loaded-or-loading runs held at once (bounds memory),
        default `2 * workers`; in the calling thread, the files read ahead, default
        `READAHEAD_RUNS`.
      skip_bad_runs: on a malformed file, or one whose N / N_test disagree with the other
        runs, call `on_bad_run(run, error)` and go on; when False, raise the error (it names
        the file). Other errors (out of memory, interrupts) always propagate.
      progress: `True` for a tqdm bar on stderr (for command lines), a callable
        `progress(done, total)`, or False for silence (the library default).
      size_check: the split-size check, e.g. with the experiment's known sizes. Default:
        with `skip_bad_runs`, the majority over `runs` (`majority_split_sizes`); else the
        first run sets the sizes (any disagreement then stops the read, naming both files).
        Its sizes also bound what a file may declare before it is inflated
        (`aux_load_bound`).
      ratios: for runs given as paths, the subset ratio of each (a `Run` carries its
        own): a run whose training fraction is another ratio's is a bad run
        (`check_subset_ratio`).

    Raises:
      AuxArraysError: a bad run (malformed, missing, unreadable, of other split sizes or
        of another ratio), unless `skip_bad_runs`.
      InconsistentRunError: with `skip_bad_runs` and no known sizes, runs tied on sizes.
      ValueError: `workers` below 1, or `ratios` not one per run.

    By default the calling thread reads and the kernel is asked to read the next files ahead
    (`posix_fadvise(WILLNEED)`), so a cold disk works while a run is checked and counted.
    Reader threads (`workers=N`) are there for storage where each file waits long on its own
    (a network mount that ignores the hint), not for speed on a local disk: most of a run's
    work holds the GIL, so threads were slower per run than the calling thread alone on
    page-cached files (docs/performance.md). Either way only a bounded number of loaded runs
    wait, and errors and results are reproducible.
    """
    runs = list(runs)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1 (or None), got {workers}")
    if size_check is None:
        # Skipping bad runs needs to know which sizes are the good ones before the first.
        size_check = majority_split_sizes(runs, workers) if skip_bad_runs else SplitSizeCheck()
    expected_ratios = _expected_ratios(runs, ratios)
    load = functools.partial(load_aux_arrays, max_bytes=aux_load_bound(size_check))
    report = progress_reporter(progress, len(runs))
    if workers:
        loads = _loads_on_threads(runs, load, workers, max(1, max_in_flight or 2 * workers))
    else:
        readahead = READAHEAD_RUNS if max_in_flight is None else max(0, max_in_flight)
        loads = _loads_here(runs, load, readahead)
    done = 0
    with cyclic_gc_paused(), contextlib.closing(loads):
        try:
            for (run, loaded), ratio in zip(loads, expected_ratios, strict=False):
                try:
                    aux = loaded()
                    size_check.check(aux)
                    if ratio is not None:
                        check_subset_ratio(aux, ratio)
                except AuxArraysError as error:
                    if not skip_bad_runs:
                        raise
                    if on_bad_run is not None:
                        on_bad_run(run, error)
                    aux = None
                done += 1
                report(done)
                if aux is not None:
                    yield run, aux
                    aux = None
        finally:
            report(None)


Load = Callable[[], AuxArrays]


def _loads_here(
    runs: list[RunLike], load: Callable[[Path], AuxArrays], readahead: int
) -> Iterator[tuple[RunLike, Load]]:
    """Each run with the call that reads it in this thread; the next `readahead` files are
    handed to the kernel's read-ahead first, so their pages arrive while this one is used."""
    paths = [_aux_path(run) for run in runs]
    for position in range(min(readahead, len(paths))):
        _advise_will_need(paths[position])
    for position, (run, path) in enumerate(zip(runs, paths, strict=True)):
        if position + readahead < len(paths):
            _advise_will_need(paths[position + readahead])
        yield run, functools.partial(load, path)


def _advise_will_need(path: Path) -> None:
    """Starts the kernel reading a whole file into the page cache, without waiting for it.

    A hint only: where it is not supported, or the file cannot be opened (the read itself
    then says why), nothing happens.
    """
    if not hasattr(os, "posix_fadvise"):  # pragma: no cover - Linux has it; macOS does not
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO: no wait
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError:  # pragma: no cover - e.g. a pipe or a file system without read-ahead
        pass
    finally:
        os.close(fd)


def _loads_on_threads(
    runs: list[RunLike], load: Callable[[Path], AuxArrays], workers: int, max_in_flight: int
) -> Iterator[tuple[RunLike, Load]]:
    """Each run with the call that waits for its read on a pool of `workers` threads; at
    most `max_in_flight` runs are loaded or loading, counting the one handed out."""
    pending: collections.deque[tuple[RunLike, Future]] = collections.deque()
    to_submit = iter(runs)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aux-reader") as pool:

        def submit_next() -> None:
            run = next(to_submit, None)
            if run is not None:
                pending.append((run, pool.submit(load, _aux_path(run))))

        try:
            for _ in range(max_in_flight):
                submit_next()
            while pending:
                run, future = pending.popleft()
                yield run, future.result
                # Only now, with the consumer done with that run, read one more.
                submit_next()
        finally:
            for _, future in pending:
                future.cancel()


@contextlib.contextmanager
def cyclic_gc_paused():
    """Python's cyclic garbage collector off inside, as it was outside.

    Why: reading a run allocates a few dozen objects, so thousands of runs trigger the
    collector hundreds of times, and each older-generation pass walks every object of a
    process that has imported numba or TensorFlow: a measurable share of a long influence
    computation went to it (perf), none of it finding garbage (the objects of a run hold
    no reference cycles; reference counting frees them). One collection runs at the end.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect(0)


def progress_reporter(progress: bool | ProgressCallback, total: int) -> Callable:
    """A function taking the runs done (or None at the end) that drives the display: a tqdm
    bar for `True`, the callable `progress(done, total)`, or nothing for False."""
    if callable(progress):
        return lambda done: None if done is None else progress(done, total)
    if not progress:
        return lambda done: None
    from tqdm import tqdm  # imported only when a bar is asked for

    bar = tqdm(total=total, unit="run", desc="reading runs", dynamic_ncols=True)

    def update(done: int | None) -> None:
        if done is None:
            bar.close()
        else:
            bar.update(done - bar.n)

    return update
