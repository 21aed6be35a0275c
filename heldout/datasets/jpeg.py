"""What a JPEG's header says about its colours, read from the bytes (no decoding).

Why not ask the decoder: TensorFlow's `decode_jpeg(channels=0)` converts a CMYK (or YCCK)
JPEG to 3 channels on the fly, so the decoded shape cannot tell a CMYK file from an RGB
one. ImageNet's training set has a few CMYK files (22), which readers other than
TensorFlow's decode wrongly or not at all; the TFRecord builder re-encodes them as RGB
JPEG. The frame header (SOF marker) states the number of colour components: 1 grayscale,
3 YCbCr/RGB, 4 CMYK/YCCK; an Adobe APP14 marker says which transform the 4 components use.
"""

from __future__ import annotations

import dataclasses

SOI = b"\xff\xd8"
# Start-of-frame markers (baseline, extended, progressive, lossless, arithmetic, ...);
# 0xC4 (DHT), 0xC8 (JPG extension) and 0xCC (DAC) are not frames.
_SOF_MARKERS = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
_APP14 = 0xEE
_EOI, _SOS = 0xD9, 0xDA
_ADOBE = b"Adobe"


@dataclasses.dataclass(frozen=True)
class JpegFrame:
    """The colour facts of one JPEG.

    Attributes:
      components: colour components in the frame header (1, 3 or 4).
      height, width: image size in pixels, from the frame header.
      adobe_transform: the Adobe APP14 marker's colour transform (0: none, i.e. RGB or
        CMYK; 1: YCbCr; 2: YCCK), None without that marker.
    """

    components: int
    height: int
    width: int
    adobe_transform: int | None = None

    @property
    def color_space(self) -> str:
        """ "grayscale", "rgb" (stored as YCbCr or RGB), "cmyk" or "ycck"."""
        if self.components == 1:
            return "grayscale"
        if self.components == 3:
            return "rgb"
        if self.components == 4:
            return "ycck" if self.adobe_transform == 2 else "cmyk"
        return f"{self.components} components"

    @property
    def is_cmyk(self) -> bool:
        """Four ink components (CMYK, or YCCK which decodes to CMYK)."""
        return self.components == 4


def read_jpeg_frame(data: bytes) -> JpegFrame | None:
    """The frame header of a JPEG file's bytes; None when `data` is not a readable JPEG.

    Walks the marker segments from the start of the file up to the first frame header;
    only the header bytes are read, so this is cheap on any image size.
    """
    if data[:2] != SOI:
        return None
    adobe_transform = None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None  # not at a marker: corrupt
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (_EOI, _SOS):
            return None  # image data (or the end) before any frame header
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")  # includes its own 2 bytes
        if length < 2 or pos + 2 + length > len(data):
            return None
        segment = data[pos + 4 : pos + 2 + length]
        if marker == _APP14 and segment[:5] == _ADOBE and len(segment) >= 12:
            adobe_transform = segment[11]
        elif marker in _SOF_MARKERS:
            if len(segment) < 6:
                return None
            # precision (1 byte), height (2), width (2), number of components (1)
            height = int.from_bytes(segment[1:3], "big")
            width = int.from_bytes(segment[3:5], "big")
            return JpegFrame(segment[5], height, width, adobe_transform)
        pos += 2 + length
    return None
