"""Reading a remote object to its end across dropped connections, and local prefixes from disk.

`remote_chunks` is the only place that retries: it reopens the source at the first byte not
yet received, after an exponential backoff, for as long as each attempt moves forward.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from heldout.download.errors import DownloadError, TransientError
from heldout.download.local import open_regular
from heldout.download.sources import CHUNK_BYTES, Source
from heldout.errors import UsageError


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How hard to try.

    Attributes:
      retries: consecutive failed attempts (without a byte of progress) before giving up.
        Default 10: with the default backoff that rides out ~10 minutes of outage.
      backoff_s: wait before the first retry; doubled after each failure, with jitter.
      max_backoff_s: cap on one wait.
      sleep: the wait function (tests pass a no-op).
    """

    retries: int = 10
    backoff_s: float = 1.0
    max_backoff_s: float = 120.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self):
        if self.retries < 0:
            raise UsageError(f"retries must be >= 0, got {self.retries}")

    def delay(self, failures: int) -> float:
        # The exponent is capped: 2.0 ** 1024 overflows, and --retries may be large.
        base = min(self.backoff_s * 2.0 ** min(failures - 1, 64), self.max_backoff_s)
        return base * random.uniform(0.5, 1.0)


def call_with_retries(fn: Callable, policy: RetryPolicy, on_retry: Callable[[str], None]):
    """`fn()`, retried on TransientError as `policy` says."""
    failures = 0
    while True:
        try:
            return fn()
        except TransientError as e:
            failures += 1
            _wait_or_give_up(e, failures, policy, on_retry, where="")


def _wait_or_give_up(error, failures, policy, on_retry, where: str) -> None:
    if failures > policy.retries:
        raise DownloadError(f"giving up after {policy.retries} retries{where}: {error}") from error
    delay = policy.delay(failures)
    on_retry(f"{error}; retry {failures}/{policy.retries}{where} in {delay:.1f} s")
    policy.sleep(delay)


def remote_chunks(
    source: Source,
    offset: int,
    size: int | None,
    policy: RetryPolicy,
    on_retry: Callable[[str], None] = lambda message: None,
) -> Iterator[bytes]:
    """The object's bytes from `offset` to its end (`size`, or the end of the response when the
    size is unknown), continuing transparently across dropped connections.

    A dropped connection, a time-out or an HTTP 5xx/429 is retried; `retries` bounds the
    consecutive failures without progress, so a long transfer survives any number of drops.
    A server that ignores the range request (answers 200 with the whole object instead of 206)
    gets the bytes before the resume point read and discarded: they are already on disk (or
    already extracted), and they were hashed from there, so nothing local is overwritten and
    the MD5 still covers every byte of the result.
    """
    position = offset
    failures = 0
    while size is None or position < size:
        try:
            start, chunks = source.open_stream(position)
            skip = position - start  # bytes re-sent by a server that ignored our range
            try:
                for chunk in chunks:
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk, skip = chunk[skip:], 0
                    if size is not None and position + len(chunk) > size:
                        raise DownloadError(
                            f"{source.url}: the server sent more than the {size} bytes it reported"
                        )
                    position += len(chunk)
                    failures = 0
                    yield chunk
            finally:
                chunks.close()
            if size is None:
                return
            if position < size:
                raise TransientError(
                    f"connection to {source.url} closed at byte {position} of {size}"
                )
        except TransientError as e:
            failures += 1
            _wait_or_give_up(e, failures, policy, on_retry, where=f" at byte {position}")


def file_chunks(
    path: Path, *, limit: int | None = None, chunk_bytes: int = CHUNK_BYTES, follow: bool = True
) -> Iterator[bytes]:
    """The bytes of a local file (its first `limit` bytes, if given), in chunks.

    Only a regular file is read (a FIFO or a device would block or never end); with
    `follow=False` a symbolic link is refused too. Both are a DownloadError.
    """
    remaining = limit
    with open(open_regular(path, follow=follow), "rb") as f:
        while remaining is None or remaining > 0:
            chunk = f.read(chunk_bytes if remaining is None else min(chunk_bytes, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
