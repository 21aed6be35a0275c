"""Plumbing for the one-pass download: worker threads joined by bounded queues, gunzip, a reader.

Streaming extraction runs as three stages so that the network, MD5, gzip inflation and file
writes overlap: (network + MD5 + optional archive copy) -> (inflate) -> (tar + writes). zlib
and hashlib release the GIL on large buffers, so the stages really run in parallel.
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator

from heldout.download.errors import ArchiveError

try:  # ISA-L inflates gzip faster than zlib, and inflating is the slowest stage.
    from isal import isal_zlib as FASTEST_ZLIB
except ImportError:  # optional: `pip install isal`
    FASTEST_ZLIB = zlib

# Inflated bytes handed on at a time; bounds memory whatever the compression ratio.
_INFLATE_OUT_BYTES = 4 << 20


class _Stopped(Exception):
    """Raised inside a producer's `put` once the consumer has gone away."""


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()
_JOIN_TIMEOUT_S = 5.0


def produce_in_thread(
    produce: Callable[[Callable[[object], None]], None],
    *,
    max_items: int = 8,
    name: str = "heldout-download",
) -> Iterator:
    """Runs `produce(put)` in a worker thread and yields what it puts, in order.

    At most `max_items` wait between the two threads. An exception in the producer is raised
    here; closing this iterator (or leaving it by an exception) makes the producer's next
    `put` raise, which ends the worker.
    """
    items: queue.Queue = queue.Queue(max_items)
    stop = threading.Event()

    def put(item) -> None:
        while True:
            if stop.is_set():
                raise _Stopped
            try:
                items.put(item, timeout=0.1)
                return
            except queue.Full:
                pass

    def work() -> None:
        try:
            produce(put)
            put(_DONE)
        except _Stopped:
            pass
        except BaseException as e:  # handed to the consumer, which re-raises it
            try:
                put(_Failed(e))
            except _Stopped:
                pass

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        # Normally quick: the worker stops at its next put. A worker waiting on a stalled
        # network read is left to finish on its own (it is a daemon, and writes nothing more).
        worker.join(_JOIN_TIMEOUT_S)


def close_iterator(iterator) -> None:
    """Closes a generator (running its clean-up); other iterators need nothing."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def threaded(iterable: Iterable, *, max_items: int = 8, name: str = "heldout-download") -> Iterator:
    """Iterates `iterable` in a worker thread (see `produce_in_thread`)."""

    def produce(put) -> None:
        iterator = iter(iterable)
        try:
            for item in iterator:
                put(item)
        finally:
            close_iterator(iterator)

    return produce_in_thread(produce, max_items=max_items, name=name)


def gunzip(chunks: Iterable[bytes], *, zlib_module=None) -> Iterator[bytes]:
    """Inflates a gzip stream (several concatenated gzip members allowed, as pigz writes).

    Each member's CRC-32 and length are checked. Raises ArchiveError for corrupt or
    truncated data, or for bytes after the last member that are not gzip. `zlib_module` is
    `zlib` or a drop-in (default: ISA-L's `isal_zlib` when installed, else `zlib`).
    """
    source = iter(chunks)
    try:
        yield from _gunzip(source, zlib_module or FASTEST_ZLIB)
    finally:
        close_iterator(source)


def _gunzip(chunks: Iterator[bytes], zlib_module) -> Iterator[bytes]:
    inflater = zlib_module.decompressobj(wbits=31)
    total_in = 0  # compressed bytes fully consumed before `data`
    members = 0  # gzip members finished
    member_start = 0  # compressed offset where the current member starts
    member_out = 0  # bytes the current member has inflated to so far
    for chunk in chunks:
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, _INFLATE_OUT_BYTES)
                member_out += len(out)
                if out:
                    yield out
                while inflater.unconsumed_tail:
                    out = inflater.decompress(inflater.unconsumed_tail, _INFLATE_OUT_BYTES)
                    member_out += len(out)
                    if out:
                        yield out
            except (zlib.error, zlib_module.error) as e:
                if members and not member_out:
                    raise ArchiveError(
                        f"unexpected bytes after the end of the gzip data, at compressed "
                        f"byte {member_start} ({e})."
                    ) from None
                raise ArchiveError(
                    f"the gzip data is corrupt ({e}; in compressed bytes {total_in} to "
                    f"{total_in + len(data)})."
                ) from None
            if inflater.eof:
                rest = inflater.unused_data
                total_in += len(data) - len(rest)
                inflater = zlib_module.decompressobj(wbits=31)
                members, member_start, member_out = members + 1, total_in, 0
                data = rest
            else:
                total_in += len(data)
                data = b""
    if total_in > member_start:  # a member was started and not finished
        if members and not member_out:
            raise ArchiveError(
                f"unexpected bytes after the end of the gzip data, at compressed byte "
                f"{member_start}."
            )
        raise ArchiveError(f"the gzip data ends early (after {total_in} compressed bytes).")


class ChunkReader:
    """A read-only file object over an iterator of byte chunks (what `tarfile` reads from)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (fewer at a chunk boundary); b"" only at the end."""
        if size is None or size < 0:
            data = b"".join([bytes(self._current), *self._chunks])
            self._current = memoryview(b"")
            return data
        while not self._current:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._current = memoryview(chunk)
        data = bytes(self._current[:size])
        self._current = self._current[size:]
        return data

    def drain(self) -> None:
        """Reads to the end (so everything upstream is hashed)."""
        self._current = memoryview(b"")
        for _ in self._chunks:
            pass

    def close(self) -> None:
        close_iterator(self._chunks)
