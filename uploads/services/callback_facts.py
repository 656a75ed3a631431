"""What a callback body says, and the answers OSS relays to the app."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings

from appserver.errors import InvalidInput
from uploads import oss
from uploads.models import CallbackRefusal, Upload


@dataclass(frozen=True)
class CallbackFacts:
    """What the callback body claims (rendered by OSS from a template the app chose)."""

    bucket: str
    key: str
    etag: str
    size: int | None
    mime_type: str
    width: int | None
    height: int | None
    image_format: str
    crc64: str
    request_id: str
    operation: str
    token: str


@dataclass(frozen=True)
class CallbackAnswer:
    """The JSON OSS relays to the app, always with HTTP 200 so the app can read it."""

    accepted: bool
    body: dict[str, Any]


class CallbackBodyInvalid(InvalidInput):
    code, message = "callback_body_invalid", "The callback body is not one this server issued."


def _int_or_none(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def callback_parse(*, body: bytes, content_type: str) -> CallbackFacts:
    try:
        text = body.decode("utf-8")
        if content_type.split(";")[0].strip().lower() == "application/json":
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            fields = {str(k): "" if v is None else str(v) for k, v in raw.items()}
        else:
            fields = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
    except (UnicodeDecodeError, ValueError) as exc:
        raise CallbackBodyInvalid() from exc
    key = fields.get("object", "")
    if not key or len(key) > 1023:
        raise CallbackBodyInvalid()
    return CallbackFacts(
        bucket=fields.get("bucket", ""),
        key=key,
        etag=fields.get("etag", "").strip('"').upper(),
        size=_int_or_none(fields.get("size")),
        mime_type=fields.get("mimeType", ""),
        width=_int_or_none(fields.get("width") or None),
        height=_int_or_none(fields.get("height") or None),
        image_format=fields.get("format", "")[:16],
        crc64=fields.get("crc64", "")[:20],
        request_id=fields.get("reqId", "")[:64],
        operation=fields.get("operation", "")[:64],
        token=fields.get("ticket", "")[:200],
    )


def upload_answer(upload: Upload) -> dict[str, Any]:
    return {
        "ok": True,
        "upload": {
            "id": upload.pk,
            "key": upload.key,
            "bucket": upload.bucket,
            "filename": upload.filename,
            "size": upload.size,
            "content_type": upload.content_type,
            "etag": upload.etag,
            "image_width": upload.image_width,
            "image_height": upload.image_height,
            "image_format": upload.image_format,
            "metadata": upload.metadata,
            "created_at": upload.created_at.isoformat().replace("+00:00", "Z"),
        },
    }


def refusal_answer(refusal: CallbackRefusal) -> dict[str, Any]:
    return {
        "ok": False,
        "error": {"code": refusal.reason, "message": refusal.message},
        "key": refusal.key,
        "object_removed": refusal.object_removed,
    }


def base_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def public_id_in(key: str) -> str:
    """The public id `key` names in the storage prefix template ("" if none); unverified."""
    head, _, _tail = settings.STORAGE_PREFIX_TEMPLATE.partition("{user_public_id}")
    return key[len(head) :].split("/", 1)[0] if key.startswith(head) else ""


def object_fields(
    *, facts: CallbackFacts, real: oss.ObjectInfo | None, now: datetime
) -> dict[str, Any]:
    """What an upload row records of the object: OSS's own HeadObject answer where there is
    one (verified now), else what the callback says (unverified: the sweep checks it)."""
    return {
        "verified_at": now if real is not None else None,
        "size": real.size if real is not None else (facts.size or 0),
        "etag": (real.etag if real else facts.etag)[:64],
        "crc64": (real.crc64 if real and real.crc64 else facts.crc64)[:20],
        "content_type": base_type(real.content_type if real else facts.mime_type)[:255],
        "image_width": facts.width,
        "image_height": facts.height,
        "image_format": facts.image_format,
        "oss_request_id": facts.request_id,
    }
