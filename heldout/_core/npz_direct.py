"""Reads the arrays of an uncompressed `.npz` straight from the file into aligned arrays.

Why: scoring an experiment reads thousands of `aux_arrays.npz` files, and `np.load` spends
most of that time in `zipfile`: each member is read in chunks, copied into a new array and
checksummed with zlib's CRC-32 (about 2 GB/s), ~1.7 ms for a 340 KB CIFAR-size run. Here
the file's central directory is parsed once and each array's bytes are read by one
`preadv` into a freshly allocated (so aligned, owned, writable) array: the kernel's copy is
the only one. The CRC-32 is still checked (with ISA-L when present, ~60 GB/s), so a
corrupt member is never taken for data.

Only what the toolkit's and the release's files contain is read here: stored (not
deflated) members holding `.npy` arrays of plain dtypes in C order. For anything else
(compressed members, object arrays, Fortran order, zip64 archives, a broken file of any
kind) `read_stored_npz` returns None and the caller uses `heldout._core.npz.load_npz`, the one
loader that reads every valid file and turns every broken one into an error naming it.
Nothing is ever unpickled here.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import io
import mmap
import os
import re
import struct
import zlib
from typing import BinaryIO

import numpy as np

from heldout._core.row_blocks import RowBlocks

try:  # ISA-L's CRC-32 is ~30x faster than zlib's; isal is a dependency, zlib the fallback
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - isal is installed with the package
    _crc32 = zlib.crc32

_END_RECORD = struct.Struct("<4s4H2LH")  # end of central directory, 22 bytes
_ZIP64_LIMIT = (1 << 32) - 1  # larger members or offsets need zip64 records: np.savez
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header, 46 bytes
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # local file header, 30 bytes
_MAX_COMMENT = 0xFFFF
_NPY_MAGIC = b"\x93NUMPY"
_FIRST_READ = 512  # a local header and a typical .npy header (128 bytes) fit in one read
# The header numpy writes; others go through ast.literal_eval (as np.load does).
_CANONICAL_HEADER = re.compile(
    r"\{'descr': '([^']+)', 'fortran_order': (False|True), 'shape': \(((?:\d+, ?)*\d*)\), \}"
)
_dtypes: dict[str, np.dtype] = {}


@dataclasses.dataclass(frozen=True)
class _Member:
    """Where one array lies in the file."""

    key: str
    raw_name: bytes
    local_offset: int  # file offset of its local header
    local_length: int  # local header + name + extra field
    npy_header: bytes  # magic, version, length and the header dict
    dtype: np.dtype
    shape: tuple[int, ...]
    array_start: int  # file offset of the array's first byte
    nbytes: int
    crc_at: int = -1  # file offset of its CRC in the central directory


@dataclasses.dataclass(frozen=True)
class _Layout:
    """The byte layout of one `.npz`: files of one experiment usually share it exactly."""

    file_size: int
    members: tuple[_Member, ...]
    tail_start: int  # after the last array: the central directory and end record
    tail: bytes  # those bytes with every CRC zeroed


# Layouts seen, by file size (the runs of an experiment have one or two). A file that does
# not match its size's layout in every byte but the CRCs is parsed afresh.
_layouts: dict[int, _Layout] = {}
_MAX_LAYOUTS = 16


def read_stored_npz(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """Every array of an uncompressed `.npz`, or None when this reader does not handle it.

    Args:
      path: the file.

    Returns:
      key (member name without `.npy`) -> array, as `np.load` would give; None for a file
      that is not a plain stored `.npz` or is broken in any way (then read it with
      `heldout._core.npz.load_npz`, which says what is wrong).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        layout = _layouts.get(size)
        arrays = _read_by_layout(fd, layout) if layout is not None else None
        if arrays is None:
            layout = _parse_layout(fd, size)
            if layout is None:
                return None
            arrays = _read_by_layout(fd, layout)
            if arrays is not None:
                if len(_layouts) >= _MAX_LAYOUTS:
                    _layouts.clear()
                _layouts[size] = layout
        return arrays
    except (OSError, ValueError, SyntaxError, TypeError, struct.error, MemoryError):
        return None  # MemoryError: a corrupt header's absurd shape; load_npz says more
    finally:
        os.close(fd)


def _read_by_layout(fd: int, layout: _Layout) -> dict[str, np.ndarray] | None:
    """The arrays, read with one `preadv` when the file has exactly `layout` (else None).

    Everything but the arrays' bytes is read into small buffers and compared with the
    layout (CRC fields aside); each array's CRC-32 is then checked against its entry.
    """
    arrays: dict[str, np.ndarray] = {}
    buffers: list = []
    prefixes = []
    position = 0
    for member in layout.members:
        prefix = bytearray(member.array_start - position)
        buffers.append(prefix)
        prefixes.append((prefix, position))
        array = np.empty(member.shape, dtype=member.dtype)
        arrays[member.key] = array
        if array.size:
            buffers.append(memoryview(array.reshape(-1).view(np.uint8)))
        position = member.array_start + member.nbytes
    tail = bytearray(layout.file_size - position)
    buffers.append(tail)
    if os.preadv(fd, buffers, 0) != layout.file_size:
        return None
    # The tail (central directory, end record) must be the layout's, CRCs zeroed.
    crcs = []
    for member in layout.members:
        at = member.crc_at - layout.tail_start
        crcs.append(int.from_bytes(tail[at : at + 4], "little"))
        tail[at : at + 4] = b"\0\0\0\0"
    if tail != layout.tail:
        return None
    for member, (prefix, start), crc in zip(layout.members, prefixes, crcs, strict=True):
        local = member.local_offset - start
        header = _LOCAL.unpack_from(prefix, local)
        name_at = local + _LOCAL.size
        if (
            header[0] != b"PK\x03\x04"
            or header[10] != len(member.raw_name)
            or _LOCAL.size + header[10] + header[11] != member.local_length
            or prefix[name_at : name_at + header[10]] != member.raw_name
        ):
            return None
        npy = prefix[len(prefix) - len(member.npy_header) :]
        if npy != member.npy_header:
            return None
        array = arrays[member.key]
        checksum = _crc32(npy)
        if array.size:
            checksum = _crc32(memoryview(array.reshape(-1).view(np.uint8)), checksum)
        if checksum & 0xFFFFFFFF != crc:
            return None
    return arrays


def _parse_layout(fd: int, size: int) -> _Layout | None:
    """The layout of a stored `.npz` from its directory and headers (no array data read)."""
    if size < _END_RECORD.size:
        return None
    tail_start = max(0, size - _END_RECORD.size - _MAX_COMMENT)
    tail = os.pread(fd, size - tail_start, tail_start)
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or end + _END_RECORD.size > len(tail):
        return None
    _, disk, cd_disk, _, entries, cd_size, cd_offset, _ = _END_RECORD.unpack_from(tail, end)
    if disk or cd_disk or entries == 0xFFFF or cd_offset == 0xFFFFFFFF:
        return None  # multi-disk or zip64 archive: leave it to zipfile
    if cd_offset + cd_size > tail_start + end:
        return None
    directory = os.pread(fd, cd_size, cd_offset)
    members: list[_Member] = []
    position = 0
    for _ in range(entries):
        if position + _CENTRAL.size > len(directory):
            return None
        fields = _CENTRAL.unpack_from(directory, position)
        signature, flags, method = fields[0], fields[5], fields[6]
        compressed, uncompressed, name_len, extra_len, comment_len = fields[10:15]
        offset = fields[18]
        if signature != b"PK\x01\x02" or flags & 0x1 or method != 0:
            return None  # encrypted or compressed: not ours to read
        if compressed != uncompressed or 0xFFFFFFFF in (compressed, offset):
            return None
        entry_length = _CENTRAL.size + name_len + extra_len + comment_len
        raw_name = directory[position + _CENTRAL.size : position + _CENTRAL.size + name_len]
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        key = name[:-4] if name.endswith(".npy") else name
        if any(member.key == key for member in members):
            return None  # a name stored twice: zipfile's rules decide which one counts
        member = _parse_member(fd, key, raw_name, offset, compressed, size)
        if member is None:
            return None
        members.append(dataclasses.replace(member, crc_at=cd_offset + position + 16))
        position += entry_length
    members.sort(key=lambda member: member.local_offset)
    end_of_arrays = 0
    for member in members:
        if member.local_offset < end_of_arrays:
            return None  # overlapping members
        end_of_arrays = member.array_start + member.nbytes
    if end_of_arrays > cd_offset:
        return None
    tail = bytearray(os.pread(fd, size - end_of_arrays, end_of_arrays))
    for member in members:
        at = member.crc_at - end_of_arrays
        tail[at : at + 4] = b"\0\0\0\0"
    return _Layout(size, tuple(members), end_of_arrays, bytes(tail))


def _parse_member(fd: int, key: str, raw_name: bytes, offset: int, length: int, size: int):
    head = os.pread(fd, _FIRST_READ, offset)
    if len(head) < _LOCAL.size or head[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = _LOCAL.unpack_from(head)[10:12]
    local_length = _LOCAL.size + name_len + extra_len
    if head[_LOCAL.size : _LOCAL.size + name_len] != raw_name:
        return None
    if offset + local_length + length > size or length < 10:
        return None
    npy = head[local_length:]
    if len(npy) < 10 or npy[:6] != _NPY_MAGIC:
        return None
    major = npy[6]
    if major == 1:
        header_len, prefix = struct.unpack_from("<H", npy, 8)[0], 10
    elif major in (2, 3):
        if len(npy) < 12:
            return None
        header_len, prefix = struct.unpack_from("<I", npy, 8)[0], 12
    else:
        return None
    data_offset = prefix + header_len  # from the start of the member
    if data_offset > length:
        return None
    if len(npy) < data_offset:
        npy = os.pread(fd, data_offset, offset + local_length)
        if len(npy) < data_offset:
            return None
    else:
        npy = npy[:data_offset]
    parsed = _parse_header(npy[prefix:data_offset].decode("utf-8" if major == 3 else "latin1"))
    if parsed is None:
        return None
    dtype, shape = parsed
    count = 1
    for extent in shape:
        count *= extent
    if data_offset + count * dtype.itemsize != length:
        return None
    start = offset + local_length + data_offset
    return _Member(
        key, raw_name, offset, local_length, bytes(npy), dtype, shape, start, count * dtype.itemsize
    )


def _parse_header(text: str) -> tuple[np.dtype, tuple[int, ...]] | None:
    """(dtype, shape) of a C-order array of a plain dtype, else None."""
    match = _CANONICAL_HEADER.fullmatch(text.rstrip(" \n"))
    if match:
        descr, fortran = match.group(1), match.group(2) == "True"
        shape = tuple(
            int(extent) for extent in match.group(3).replace(" ", "").split(",") if extent
        )
    else:
        header = ast.literal_eval(text)
        if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
            return None
        descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
        if not isinstance(descr, str) or not isinstance(shape, tuple):
            return None
        if not all(isinstance(extent, int) and extent >= 0 for extent in shape):
            return None
    if fortran is not False:
        return None
    dtype = _dtypes.get(descr)
    if dtype is None:
        dtype = np.dtype(descr)
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            return None
        _dtypes[descr] = dtype
    return dtype, shape


def write_stored_npz(file: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """Writes what `np.savez(file, **arrays)` writes (stored members), from the arrays' memory.

    Why: `np.savez` copies every array into bytes (`tobytes`) and checksums it with zlib
    (~2 GB/s); for a 2 GB influence matrix that is a second of copying and checksumming.
    Here each array is written straight from its memory and the CRC-32 computed with
    ISA-L. Archives that need zip64 records (a member or offset past 4 GiB) and object
    arrays are left to `np.savez`. `np.load`, `zipfile` and `read_stored_npz` read the
    result.

    Args:
      file: a binary file open for writing, positioned at 0 (e.g. from `io.atomic_open`).
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
        if size >= _ZIP64_LIMIT or offset >= _ZIP64_LIMIT:
            return _savez(file, arrays)
        raw_name = f"{name}.npy".encode()
        prepared.append((raw_name, header, array, size, offset))
        offset += _LOCAL.size + len(raw_name) + size
    directory_size = sum(_CENTRAL.size + len(entry[0]) for entry in prepared)
    if offset + directory_size >= _ZIP64_LIMIT or len(prepared) >= 0xFFFF:
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
        file.write(_LOCAL.pack(*local))
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
            if end != local_at + _LOCAL.size + len(raw_name) + size:
                raise ValueError(f"{raw_name.decode()}: {end - local_at} bytes, not {size}")
            local[7] = crc
            file.seek(local_at)
            file.write(_LOCAL.pack(*local))
            file.seek(end)
        directory.append(
            _CENTRAL.pack(
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
        _END_RECORD.pack(
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

    Why: a buffered write of a 400 MB influence matrix allocates and fills 400 MB of page
    cache and copies into it, and on a virtual machine whose host has taken the guest's
    free pages back every new page costs a fault on the host: 0.2-1.2 s measured here for
    what O_DIRECT writes in 0.11-0.14 s, the disk reading straight from one reused 8 MB
    buffer. The unaligned head and tail go through the file object as before, so the
    bytes written are the same either way; file systems without O_DIRECT (or a file
    object without a descriptor) get the buffered write. Durability is unchanged: the
    caller's fsync covers both kinds of write. `close()` ends the member.
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
