"""The signature receivers check: HMAC-SHA256 over "<timestamp>.<body>" with the endpoint's
secret, as Stripe and GitHub sign theirs. docs/events.md has verification snippets."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Appserver-Signature"
EVENT_ID_HEADER = "X-Appserver-Event-Id"
EVENT_TYPE_HEADER = "X-Appserver-Event-Type"


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def signature_valid(
    *, secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None
) -> bool:
    """What a receiver does (the docs' Python snippet): the timestamp within `tolerance`
    seconds, and one v1 value equal to the expected MAC (constant-time)."""
    try:
        parts = [item.split("=", 1) for item in header.split(",")]
        timestamp = int(next(value for key, value in parts if key == "t"))
    except (ValueError, StopIteration):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    expected = signature(secret=secret, timestamp=timestamp, body=body).split("v1=", 1)[1]
    return any(key == "v1" and hmac.compare_digest(value, expected) for key, value in parts)
