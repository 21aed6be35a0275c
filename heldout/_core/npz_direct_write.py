"""Writes what `np.savez` writes (stored members) straight from the arrays' memory.

Why: `np.savez` copies every array into bytes and checksums it with zlib; for large
matrices that copy dominates a save. Here each array is written from its memory
(or from `RowBlocks` as they are computed) and large members mostly with O_DIRECT, past
the page cache. `np.load`, `zipfile` and `npz_direct_read.read_stored_npz` read the result.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
from typing import BinaryIO

import numpy as np

from heldout._core.row_blocks import RowBlocks
from heldout._core.zip_records import CENTRAL, END_RECORD, LOCAL, ZIP64_LIMIT
from heldout._core.zip_records import crc32 as _crc32


def write_stored_npz(file: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """Writes what `np.savez(file, **arrays)` writes (stored members), from the arrays' memory.

    Why: `np.savez` copies every array into bytes (`tobytes`) and checksums it with zlib.
    Here each array is written straight from its memory and the CRC-32 computed with
    ISA-L. Archives that need zip64 records (a member or offset past 4 GiB) and object
    arrays are left to `np.savez`. `np.load`, `zipfile` and `read_stored_npz` read the
    result.

    Args:
      file: a binary file open for writing, positioned at 0 (e.g. from
        `heldout._core.atomic.atomic_open`).
      arrays: name -> array, or a `heldout._core.row_blocks.RowBlocks` (consumed here: its
        blocks are written as they come, and the whole array never exists).
    """
    prepared = []
    offset = 0
    for name, value in arrays.items():
        if isinstance(value, RowBlocks):  # computed while written, checksummed as it goes
            array, nbytes = value, value.nbytes
            descr = np.lib.format.dtype_to_descr(value.dtype)
            header_fields = {"descr": descr, "fortran_order": False, "shape": value.shape}
        else:
            array = np.asanyarray(value)
            if array.dtype.hasobject:
                return _savez(file, arrays)
            if not array.flags.c_contiguous:
                array = np.ascontiguousarray(array)
            header_fields = np.lib.format.header_data_from_array_1_0(array)
            nbytes = array.nbytes
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, header_fields)
        header = header.getvalue()
        size = len(header) + nbytes
        if size >= ZIP64_LIMIT or offset >= ZIP64_LIMIT:
            return _savez(file, arrays)
        raw_name = f"{name}.npy".encode()
        prepared.append((raw_name, header, array, size, offset))
        offset += LOCAL.size + len(raw_name) + size
    directory_size = sum(CENTRAL.size + len(entry[0]) for entry in prepared)
    if offset + directory_size >= ZIP64_LIMIT or len(prepared) >= 0xFFFF:
        return _savez(file, arrays)
    directory = []
    for raw_name, header, array, size, member_offset in prepared:
        # version 2.0 (stored), no flags, DOS time 1980-01-01 00:00: the bytes depend on
        # the arrays alone.
        local = [b"PK\x03\x04", 20, 0, 0, 0, 0, 0x21, 0, size, size, len(raw_name), 0]
        streamed = isinstance(array, RowBlocks)
        if streamed:  # checksummed as it is written: its CRC replaces a placeholder after
            pieces, crc, local_at = array.blocks(), _crc32(header), file.tell()
        else:
            pieces = [array.reshape(-1).view(np.uint8)] if array.size else []
            crc = _crc32(memoryview(pieces[0]) if pieces else b"", _crc32(header))
            local[7] = crc & 0xFFFFFFFF
        file.write(LOCAL.pack(*local))
        file.write(raw_name)
        file.write(header)
        writer = _DataWriter(file, size - len(header))
        try:
            for piece in pieces:
                data = memoryview(np.ascontiguousarray(piece).reshape(-1).view(np.uint8))
                if streamed:
                    crc = _crc32(data, crc)
                writer.write(data)
            writer.close()
        finally:
            writer.release()  # after an error too: the O_DIRECT descriptor and buffer
        crc &= 0xFFFFFFFF
        if streamed:
            end = file.tell()
            if end != local_at + LOCAL.size + len(raw_name) + size:
                raise ValueError(f"{raw_name.decode()}: {end - local_at} bytes, not {size}")
            local[7] = crc
            file.seek(local_at)
            file.write(LOCAL.pack(*local))
            file.seek(end)
        directory.append(
            CENTRAL.pack(
                b"PK\x01\x02",
                20,
                3,
                20,
                0,
                0,
                0,
                0,
                0x21,
                crc,
                size,
                size,
                len(raw_name),
                0,
                0,
                0,
                0,
                0o600 << 16,
                member_offset,
            )
            + raw_name
        )
    directory = b"".join(directory)
    file.write(directory)
    file.write(
        END_RECORD.pack(
            b"PK\x05\x06", 0, 0, len(prepared), len(prepared), len(directory), offset, 0
        )
    )


# Members this large have their block-aligned middle written with O_DIRECT.
DIRECT_WRITE_MIN_BYTES = 64 << 20
DIRECT_WRITE_CHUNK = 8 << 20  # bytes per O_DIRECT write, through one aligned buffer
_BLOCK = 4096  # O_DIRECT alignment of file offsets, lengths and memory (every device's)


class _DataWriter:
    """Writes one member's data at the file's position, in pieces; large data mostly past
    the page cache.

    Why: a buffered write of a large matrix allocates and fills as much page
    cache and copies into it, and on a virtual machine whose host has taken the guest's
    free pages back every new page costs a fault on the host; with O_DIRECT the disk
    reads straight from one reused 8 MB buffer. The unaligned head and tail go through
    the file object as before, so the bytes written are the same either way; file
    systems without O_DIRECT (or a file object without a descriptor) get the buffered
    write. Durability is unchanged: the caller's fsync covers both kinds of write.
    `close()` ends the member.
    """

    def __init__(self, file: BinaryIO, nbytes: int):
        self.file = file
        self.direct = -1
        if nbytes < DIRECT_WRITE_MIN_BYTES or not hasattr(os, "O_DIRECT"):
            return
        try:
            fd = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            return
        file.flush()
        self.start = file.tell()
        self.position = self.start  # the next byte's offset in the file
        self.aligned_from = self.start + (-self.start % _BLOCK)
        try:
            direct = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_DIRECT)
        except OSError:
            return
        try:
            self.buffer = mmap.mmap(-1, DIRECT_WRITE_CHUNK)  # page aligned
        except BaseException:
            os.close(direct)
            raise
        self.direct = direct
        self.view = memoryview(self.buffer)
        self.filled = 0  # bytes waiting in the buffer, from `position` on

    def write(self, data: memoryview) -> None:
        if self.direct < 0:
            self.file.write(data)
            return
        data = memoryview(data).cast("B")
        if self.position < self.aligned_from:  # the head, up to a block boundary
            n = min(data.nbytes, self.aligned_from - self.position)
            self.file.write(data[:n])
            self.file.flush()
            self.position += n
            data = data[n:]
        while data.nbytes:
            n = min(data.nbytes, DIRECT_WRITE_CHUNK - self.filled)
            self.view[self.filled : self.filled + n] = data[:n]
            self.filled += n
            data = data[n:]
            if self.filled == DIRECT_WRITE_CHUNK:
                self._flush(DIRECT_WRITE_CHUNK)
                if self.direct < 0:  # O_DIRECT refused: buffered from here on
                    self.file.write(data)
                    return

    def _flush(self, n: int) -> None:
        """Writes the buffer's first n bytes (whole blocks) with O_DIRECT; on refusal,
        writes everything waiting through the file object and stops using O_DIRECT."""
        written = 0
        try:
            written = os.pwrite(self.direct, self.view[:n], self.position)
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise  # a real write error (no space, I/O): the caller's temporary goes
        written -= written % _BLOCK
        self.position += written
        rest = self.filled - written
        self.view[:rest] = self.view[written : self.filled]
        self.filled = rest
        if written < n:
            self._stop_direct()

    def _stop_direct(self) -> None:
        self.file.seek(self.position)
        self.file.write(self.view[: self.filled])
        self.position += self.filled
        self.filled = 0
        self.release()

    def release(self) -> None:
        """Closes the O_DIRECT descriptor and frees the buffer, writing nothing; idempotent.

        Why separate from `close`: after a real write error (no space, I/O) nothing more
        can be written, but the descriptor and the 8 MB buffer must still go, or every
        failed save would leak both.
        """
        if self.direct < 0:
            return
        os.close(self.direct)
        self.direct = -1
        try:
            self.view.release()
            self.buffer.close()
        except BufferError:  # a slice is still alive (an error's traceback holds the one
            pass  # being written): the buffer goes with it

    def close(self) -> None:
        if self.direct < 0:
            return
        whole = self.filled - self.filled % _BLOCK
        if whole:
            self._flush(whole)
        if self.direct >= 0:
            self._stop_direct()  # the tail, through the file object, and the file's end


def _savez(file: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    file.seek(0)
    file.truncate()
    np.savez(file, **arrays)
