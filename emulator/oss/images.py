"""Image facts OSS reports for an object (width, height, format), read from its first bytes.

OSS fills a callback's ``${imageInfo.width}``, ``${imageInfo.height}`` and ``${imageInfo.format}``
from the object's header bytes (PNG, JPEG, GIF, WebP, BMP), never from the whole object; a file
that is not a recognised image gets empty values.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str  # "png", "jpg", "gif", "webp", "bmp"


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    while data is not None and len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            return None
        data += more
    return data


def _skip(stream: BinaryIO, n: int) -> bool:
    while n > 0:
        chunk = stream.read(min(n, 64 * 1024))
        if not chunk:
            return False
        n -= len(chunk)
    return True


def _jpeg_size(stream: BinaryIO) -> ImageInfo | None:
    # Walk the marker segments until a Start Of Frame; skipped segments are read and dropped in
    # bounded chunks. Give up after 16 MiB: no real JPEG hides its frame header that far.
    budget = 16 * 1024 * 1024
    while budget > 0:
        byte = stream.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            return None
        marker = stream.read(1)
        while marker == b"\xff":  # fill bytes
            marker = stream.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in (0x01, *range(0xD0, 0xD9)):
            continue  # markers without a length
        if code == 0xD9:
            return None
        length_bytes = _read_exact(stream, 2)
        if length_bytes is None:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if length < 2:
            return None
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
            frame = _read_exact(stream, 5)
            if frame is None:
                return None
            _precision, height, width = struct.unpack(">BHH", frame)
            return ImageInfo(width=width, height=height, format="jpg")
        if not _skip(stream, length - 2):
            return None
        budget -= length + 2
    return None


def image_info(stream: BinaryIO) -> ImageInfo | None:
    """Width, height and format of an image from its header bytes (from the stream's current
    position), or None when the bytes are not an image this recognises."""
    head = _read_exact(stream, 2)
    if head is None:
        return None
    if head == b"\xff\xd8":
        return _jpeg_size(stream)
    rest = stream.read(28) or b""
    data = head + rest
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return ImageInfo(width=width, height=height, format="png")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return ImageInfo(width=width, height=height, format="gif")
    if data.startswith(b"BM") and len(data) >= 26:
        (dib_size,) = struct.unpack("<I", data[14:18])
        if dib_size == 12:  # OS/2 BITMAPCOREHEADER
            width, height = struct.unpack("<HH", data[18:22])
        else:
            width, height = struct.unpack("<ii", data[18:26])
        return ImageInfo(width=abs(width), height=abs(height), format="bmp")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", data[26:30])
            return ImageInfo(width=width & 0x3FFF, height=height & 0x3FFF, format="webp")
        if chunk == b"VP8L" and data[20] == 0x2F:
            (bits,) = struct.unpack("<I", data[21:25])
            return ImageInfo(
                width=(bits & 0x3FFF) + 1, height=((bits >> 14) & 0x3FFF) + 1, format="webp"
            )
        if chunk == b"VP8X":
            width = int.from_bytes(data[24:27], "little") + 1
            height = int.from_bytes(data[27:30], "little") + 1
            return ImageInfo(width=width, height=height, format="webp")
    return None
