"""The download plumbing: worker threads joined by queues, gunzip, the chunk reader."""

import gzip
import random
import threading
import zlib

import pytest

from heldout.download.errors import ArchiveError
from heldout.download.pipeline import (
    FASTEST_ZLIB,
    ChunkReader,
    gunzip,
    produce_in_thread,
    threaded,
)


def test_threaded_yields_in_order_and_raises_worker_errors():
    def numbers():
        yield from range(100)
        raise OSError("disk on fire")

    received = []
    with pytest.raises(OSError, match="disk on fire"):
        for item in threaded(numbers(), max_items=3):
            received.append(item)
    assert received == list(range(100))


def test_closing_stops_the_producer_and_runs_its_cleanup():
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    items = threaded(endless(), max_items=2)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()  # joins the worker, which closed its generator
    assert closed.is_set()


def test_produce_in_thread_push_style():
    def produce(put):
        for word in ("a", "b", "c"):
            put(word)

    assert list(produce_in_thread(produce)) == ["a", "b", "c"]


ZLIBS = [zlib] + ([FASTEST_ZLIB] if FASTEST_ZLIB is not zlib else [])
TEXT = b"".join(b"line %d of a test file\n" % i for i in range(20_000))
RANDOM = random.Random(0).randbytes(300_000)


@pytest.fixture(params=ZLIBS, ids=lambda m: m.__name__)
def zlib_module(request):
    return request.param


def test_gunzip_bounds_each_output_chunk(zlib_module):
    zeros = gzip.compress(bytes(50 << 20))  # 50 MB of zeros compress to ~50 KB
    sizes = [len(chunk) for chunk in gunzip([zeros], zlib_module=zlib_module)]
    assert sum(sizes) == 50 << 20 and max(sizes) <= 4 << 20


def test_gunzip_concatenated_members_any_chunking(zlib_module):
    # pigz and `cat a.gz b.gz` give several gzip members: one stream.
    both = gzip.compress(TEXT) + gzip.compress(RANDOM)
    for cut in (1, 10, len(both) // 2, len(both) - 1):
        chunks = [both[:cut], both[cut:]]
        assert b"".join(gunzip(chunks, zlib_module=zlib_module)) == TEXT + RANDOM


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda gz: gz[:-3], "ends early"),
        (lambda gz: gz + b"junk", "unexpected bytes after the end of the gzip data"),
        (lambda gz: gz[:-8] + bytes([gz[-8] ^ 1]) + gz[-7:], "corrupt"),  # the CRC-32
        (lambda gz: gz[:20] + bytes(50) + gz[70:], "corrupt"),  # deflate data
    ],
    ids=["truncated", "trailing garbage", "bad crc", "bad deflate"],
)
def test_gunzip_refuses_damaged_streams(zlib_module, damage, message):
    with pytest.raises(ArchiveError, match=message):
        list(gunzip([damage(gzip.compress(TEXT))], zlib_module=zlib_module))


def test_chunk_reader_short_reads_and_drain():
    reader = ChunkReader(iter([b"abc", b"", b"defg"]))
    assert reader.read(2) == b"ab"
    assert reader.read(5) == b"c"  # short read at a chunk boundary
    assert reader.read(5) == b"defg"
    assert reader.read(5) == b""
    chunks = iter([b"abc", b"defg", b"h"])
    reader = ChunkReader(chunks)
    reader.read(1)
    reader.drain()
    assert next(chunks, None) is None and reader.read(1) == b""
