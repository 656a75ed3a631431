"""Object and bucket names as OSS accepts them, and the Content-Type OSS gives a key."""

from __future__ import annotations

import mimetypes
import re

from emulator.oss.errors import OssError

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
MAX_KEY_BYTES = 1023


def check_key(key: str) -> None:
    if len(key.encode()) > MAX_KEY_BYTES:
        raise OssError(400, "InvalidObjectName", "The object name is longer than 1023 bytes.")
    if key.startswith(("/", "\\")) or any(ord(c) < 0x20 and c != "\t" for c in key):
        raise OssError(400, "InvalidObjectName", "The specified object name is not valid.")


def guess_content_type(key: str) -> str:
    """What OSS stores when the upload names no Content-Type: a guess from the extension."""
    guessed, _ = mimetypes.guess_type(key, strict=False)
    return guessed or "application/octet-stream"
