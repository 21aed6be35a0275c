"""The zip records of an uncompressed `.npz` and its CRC-32, shared by the direct reader
and writer (`npz_direct_read`, `npz_direct_write`).

Only the records a stored, non-zip64 archive has: the end of central directory, the
central directory entries and the local headers (APPNOTE.TXT 4.3).
"""

from __future__ import annotations

import struct
import zlib

try:  # ISA-L's CRC-32 is much faster than zlib's; isal is a dependency, zlib the fallback
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - isal is installed with the package
    crc32 = zlib.crc32

END_RECORD = struct.Struct("<4s4H2LH")  # end of central directory, 22 bytes
ZIP64_LIMIT = (1 << 32) - 1  # larger members or offsets need zip64 records: np.savez
CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header, 46 bytes
LOCAL = struct.Struct("<4s2B4HL2L2H")  # local file header, 30 bytes

__all__ = ["CENTRAL", "END_RECORD", "LOCAL", "ZIP64_LIMIT", "crc32"]
