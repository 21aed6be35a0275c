"""Reads the arrays of an uncompressed `.npz` straight from the file into aligned arrays.

Why: reading thousands of small `.npz` files, `np.load` spends most of its time in
`zipfile` (chunked reads, copies, zlib's CRC-32). Here the central directory is
parsed once per layout and each array's bytes are read by one `preadv` into a fresh array;
the CRC-32 is still checked. Anything else (deflated or zip64 archives, object arrays,
Fortran order, a broken file) gives None: the caller then uses `heldout._core.npz.load_npz`,
which reads every valid file and names the problem of a broken one. Nothing is unpickled.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import stat
import struct

import numpy as np

from heldout._core.zip_records import CENTRAL, END_RECORD, LOCAL
from heldout._core.zip_records import crc32 as _crc32

_MAX_COMMENT = 0xFFFF
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
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
    """The byte layout of one `.npz`: files written alike usually share it exactly."""

    file_size: int
    members: tuple[_Member, ...]
    tail_start: int  # after the last array: the central directory and end record
    tail: bytes  # those bytes with every CRC zeroed


# Layouts seen, by file size (files written alike have one or two). A file that does
# not match its size's layout in every byte but the CRCs is parsed afresh.
_layouts: dict[int, _Layout] = {}
_MAX_LAYOUTS = 16


def read_stored_npz(
    path: str | os.PathLike, max_bytes: int | None = None
) -> dict[str, np.ndarray] | None:
    """Every array of an uncompressed `.npz`, or None when this reader does not handle it.

    Args:
      path: the file.
      max_bytes: a file larger than this is left to `load_npz` (which checks what it
        declares before reading); its arrays, which the file holds, cannot be larger.

    Returns:
      key (member name without `.npy`) -> array, as `np.load` would give; None for a file
      that is not a plain stored `.npz` or is broken in any way (then read it with
      `heldout._core.npz.load_npz`, which says what is wrong).
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK)  # a FIFO must not block the open
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        size = info.st_size
        if not stat.S_ISREG(info.st_mode) or (max_bytes is not None and size > max_bytes):
            return None
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
        header = LOCAL.unpack_from(prefix, local)
        name_at = local + LOCAL.size
        if (
            header[0] != b"PK\x03\x04"
            or header[10] != len(member.raw_name)
            or LOCAL.size + header[10] + header[11] != member.local_length
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
    if size < END_RECORD.size:
        return None
    tail_start = max(0, size - END_RECORD.size - _MAX_COMMENT)
    tail = os.pread(fd, size - tail_start, tail_start)
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or end + END_RECORD.size > len(tail):
        return None
    _, disk, cd_disk, _, entries, cd_size, cd_offset, _ = END_RECORD.unpack_from(tail, end)
    if disk or cd_disk or entries == 0xFFFF or cd_offset == 0xFFFFFFFF:
        return None  # multi-disk or zip64 archive: leave it to zipfile
    if cd_offset + cd_size > tail_start + end:
        return None
    directory = os.pread(fd, cd_size, cd_offset)
    members: list[_Member] = []
    position = 0
    for _ in range(entries):
        if position + CENTRAL.size > len(directory):
            return None
        fields = CENTRAL.unpack_from(directory, position)
        signature, flags, method = fields[0], fields[5], fields[6]
        compressed, uncompressed, name_len, extra_len, comment_len = fields[10:15]
        offset = fields[18]
        if signature != b"PK\x01\x02" or flags & 0x1 or method != 0:
            return None  # encrypted or compressed: not ours to read
        if compressed != uncompressed or 0xFFFFFFFF in (compressed, offset):
            return None
        entry_length = CENTRAL.size + name_len + extra_len + comment_len
        raw_name = directory[position + CENTRAL.size : position + CENTRAL.size + name_len]
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
    if len(head) < LOCAL.size or head[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = LOCAL.unpack_from(head)[10:12]
    local_length = LOCAL.size + name_len + extra_len
    if head[LOCAL.size : LOCAL.size + name_len] != raw_name:
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
