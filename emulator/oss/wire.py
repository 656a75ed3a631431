"""The HTTP request and response as the OSS layer sees them, independent of the server class.

Bodies are streams: a request body is read on demand (Content-Length or chunked), a response body
is either a few bytes or a list of file slices the server copies to the socket. Nothing ever holds
a large object whole in memory.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import parse_qsl

from emulator.oss.errors import OssError

_MAX_CHUNK_LINE = 4096


class Headers:
    """Case-insensitive, single-valued request headers (the SDKs never repeat the ones we read)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = [(name.lower(), value) for name, value in items]
        self._map: dict[str, str] = {}
        for name, value in self._items:
            self._map.setdefault(name, value)

    def get(self, name: str, default: str = "") -> str:
        return self._map.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def items(self) -> list[tuple[str, str]]:
        return list(self._map.items())

    def as_dict(self) -> dict[str, str]:
        return dict(self._map)


class BodyReader:
    """Reads a request body exactly once, decoding chunked transfer encoding."""

    def __init__(self, stream: BinaryIO, *, length: int | None, chunked: bool) -> None:
        self._stream = stream
        self._chunked = chunked
        self._remaining = 0 if chunked else (length or 0)
        self.declared_length = None if chunked else (length or 0)
        self._chunk_left = 0
        self._done = not chunked and self._remaining == 0
        self.broken = False  # the connection can no longer be trusted for the next request

    def _fail(self, message: str) -> OssError:
        self.broken = True
        return OssError(400, "InvalidRequest", message)

    def _read_raw(self, n: int) -> bytes:
        data = self._stream.read(n)
        if len(data) < n:
            raise self._fail("The request body ended before its declared length.")
        return data

    def _next_chunk(self) -> None:
        line = self._stream.readline(_MAX_CHUNK_LINE)
        if not line.endswith(b"\n"):
            raise self._fail("Malformed chunked transfer encoding.")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise self._fail("Malformed chunk size in chunked transfer encoding.") from None
        if size < 0:
            raise self._fail("Malformed chunk size in chunked transfer encoding.")
        if size == 0:
            # Trailer section: header lines up to an empty line.
            for _ in range(100):
                trailer = self._stream.readline(_MAX_CHUNK_LINE)
                if trailer in (b"\r\n", b"\n"):
                    break
                if not trailer.endswith(b"\n"):
                    raise self._fail("Malformed chunked transfer encoding trailer.")
            else:
                raise self._fail("Too many trailer lines.")
            self._done = True
            return
        self._chunk_left = size

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        if n is None or n < 0:
            n = 1 << 62
        if not self._chunked:
            data = self._read_raw(min(n, self._remaining)) if self._remaining else b""
            self._remaining -= len(data)
            self._done = self._remaining == 0
            return data
        if self._chunk_left == 0:
            self._next_chunk()
            if self._done:
                return b""
        data = self._read_raw(min(n, self._chunk_left))
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and self._stream.readline(_MAX_CHUNK_LINE) not in (b"\r\n", b"\n"):
            raise self._fail("Malformed chunked transfer encoding.")
        return data

    def read_all(self, limit: int) -> bytes:
        """The whole body, for the small XML or form bodies; refuses more than `limit` bytes."""
        buffer = io.BytesIO()
        while True:
            data = self.read(min(1 << 16, limit + 1 - buffer.tell()))
            if not data:
                return buffer.getvalue()
            buffer.write(data)
            if buffer.tell() > limit:
                raise OssError(400, "EntityTooLarge", "Your proposed upload exceeds the limit.")

    @property
    def finished(self) -> bool:
        return self._done

    def drain(self, limit: int) -> bool:
        """Discard the unread rest so the connection can carry the next request.

        Returns False when the rest is larger than `limit` or malformed; the server then closes
        the connection instead.
        """
        seen = 0
        try:
            while not self._done:
                data = self.read(1 << 16)
                seen += len(data)
                if seen > limit:
                    return False
        except (OssError, OSError):
            return False
        return True


@dataclass
class Request:
    method: str
    raw_path: str  # path as sent, still percent-encoded, without the query
    raw_query: str
    headers: Headers
    body: BodyReader
    client_ip: str
    request_id: str
    query: dict[str, str] = field(default_factory=dict)
    query_items: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            self.query_items = parse_qsl(
                self.raw_query, keep_blank_values=True, errors="strict", max_num_fields=1000
            )
        except (ValueError, UnicodeDecodeError):
            raise OssError(400, "InvalidArgument", "The query string is malformed.") from None
        self.query = {}
        for name, value in self.query_items:
            self.query.setdefault(name, value)


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # A large body: slices of files copied to the socket in order (the files were opened when the
    # response was made, so a concurrent overwrite cannot change what is sent).
    slices: list[tuple[BinaryIO, int, int]] | None = None

    @property
    def content_length(self) -> int:
        if self.slices is not None:
            return sum(length for _, _, length in self.slices)
        return len(self.body)

    def close(self) -> None:
        for handle, _, _ in self.slices or []:
            handle.close()
