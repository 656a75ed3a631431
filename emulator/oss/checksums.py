"""MD5 and CRC-64/ECMA as OSS computes them.

oss2 compares `x-oss-hash-crc64ecma` with its own running CRC and raises InconsistentError on any
difference, so the value has to be exact for every way an object comes to be: one body, parts of
a multipart upload (combined without re-reading the data) and appends (continued from the
previous value).
"""

from __future__ import annotations

import base64
import hashlib

import crcmod

_POLY = 0x142F0E1EBA9EA3693
_XOR_OUT = 0xFFFFFFFFFFFFFFFF
# The polynomial bit-reversed, the form the reflected CRC register works with.
_POLY_REFLECTED = 0xC96C5795D7870F42

# crc64(data, previous) continues a CRC over concatenated data; previous=0 starts one.
crc64 = crcmod.mkCrcFun(_POLY, initCrc=0, rev=True, xorOut=_XOR_OUT)


def _gf2_times(matrix: list[int], vector: int) -> int:
    total = 0
    index = 0
    while vector:
        if vector & 1:
            total ^= matrix[index]
        vector >>= 1
        index += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, row) for row in matrix]


def crc64_combine(crc1: int, crc2: int, length2: int) -> int:
    """CRC of A+B from crc(A), crc(B) and len(B): zlib's crc32_combine, widened to 64 bits."""
    if length2 <= 0:
        return crc1
    odd = [_POLY_REFLECTED] + [1 << n for n in range(63)]  # operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)
        if length2 & 1:
            crc1 = _gf2_times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = _gf2_square(even)
        if length2 & 1:
            crc1 = _gf2_times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2


class Digest:
    """Running MD5, CRC-64 and size of a stream."""

    def __init__(self) -> None:
        self._md5 = hashlib.md5()  # noqa: S324 - OSS defines ETag and Content-MD5 as MD5
        self.crc64 = 0
        self.size = 0

    def update(self, data: bytes) -> None:
        self.update_md5(data)
        self.update_crc(data)

    # The two halves separately, so a caller may run them in parallel on one chunk; each must
    # still see the chunks in order.
    def update_md5(self, data: bytes) -> None:
        self._md5.update(data)

    def update_crc(self, data: bytes) -> None:
        self.crc64 = crc64(data, self.crc64)
        self.size += len(data)

    @property
    def md5(self) -> bytes:
        return self._md5.digest()


def etag_of(md5: bytes) -> str:
    return md5.hex().upper()


def multipart_etag(part_md5s: list[bytes]) -> str:
    combined = hashlib.md5(b"".join(part_md5s)).hexdigest().upper()  # noqa: S324
    return f"{combined}-{len(part_md5s)}"


def content_md5_of(md5: bytes) -> str:
    return base64.b64encode(md5).decode()
