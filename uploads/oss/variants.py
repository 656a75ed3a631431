"""Image variants: presigned GET URLs with an OSS IMG process (x-oss-process=image/... or
style/<name>), which OSS derives on GET. The bucket needs IMG enabled and, for style/ variants,
the styles defined."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import oss2
from django.conf import settings

from uploads.oss.client import StorageUnavailable, _bucket, _describe
from uploads.oss.presign import _v4_signing_key

# Media types IMG decodes as a source:
IMG_SOURCE_TYPES = frozenset(
    [
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/bmp",
        "image/tiff",
        "image/heic",
    ]
)


@dataclass(frozen=True)
class ProcessUrls:
    urls: dict[str, str]  # variant name -> presigned GET with x-oss-process
    expires_at: datetime


def oss_sign_process_urls(
    *, keys: list[str], processes: dict[str, str], expires_in: int | None = None
) -> dict[str, ProcessUrls]:
    """Presigned GET URLs of derived images, `processes[name]` applied to each key.

    The same URLs oss2's `sign_url(..., params={"x-oss-process": ...})` makes (V1 or V4 per
    OSS_SIGNATURE_VERSION; the process is signed, so a client cannot change it), computed here
    with what the URLs of a page share (credential, scope, signing key, quoted processes)
    worked out once: through oss2, signing a page of 50 uploads with two variants cost more
    than serving the page."""
    if not keys or not processes:
        return {}
    seconds = expires_in if expires_in is not None else settings.IMAGE_VARIANT_URL_TTL_SECONDS
    try:
        client = _bucket(endpoint=settings.OSS_PUBLIC_ENDPOINT)
        prefix = client._make_url(client.bucket_name, "", slash_safe=True)
    except (oss2.exceptions.ClientError, ValueError) as exc:
        raise StorageUnavailable(f"Could not sign image URLs: {_describe(exc)}") from exc
    if settings.IMAGE_VARIANT_ENDPOINT:
        # A CDN (or bucket CNAME) serving the bucket at its root: OSS signs /bucket/key
        # whatever host the URL names, so the same signature holds behind it.
        prefix = settings.IMAGE_VARIANT_ENDPOINT.rstrip("/") + "/"
    now = datetime.now(UTC).replace(microsecond=0)
    quoted = [(name, process, quote(process, safe="")) for name, process in processes.items()]
    if settings.OSS_SIGNATURE_VERSION == "v4":
        sign = _v4_url_signer(client.bucket_name, prefix, now, seconds, quoted)
    else:
        sign = _v1_url_signer(client.bucket_name, prefix, int(now.timestamp()) + seconds, quoted)
    expires_at = now + timedelta(seconds=seconds)
    return {key: ProcessUrls(urls=sign(key), expires_at=expires_at) for key in keys}


def _v1_url_signer(bucket: str, prefix: str, expires: int, processes: list[tuple[str, str, str]]):
    secret = settings.ALIBABA_ACCESS_KEY_SECRET.encode()
    access_key_id = quote(settings.ALIBABA_ACCESS_KEY_ID, safe="")
    tail = f"&OSSAccessKeyId={access_key_id}&Expires={expires}&Signature="
    head = f"GET\n\n\n{expires}\n/{bucket}/"

    def sign(key: str) -> dict[str, str]:
        path = prefix + quote(key, safe="/")
        urls = {}
        for name, process, quoted_process in processes:
            to_sign = f"{head}{key}?x-oss-process={process}".encode()
            signature = base64.b64encode(hmac.digest(secret, to_sign, "sha1")).decode()
            urls[name] = f"{path}?x-oss-process={quoted_process}{tail}{quote(signature, safe='')}"
        return urls

    return sign


def _v4_url_signer(
    bucket: str, prefix: str, now: datetime, seconds: int, processes: list[tuple[str, str, str]]
):
    date_time = now.strftime("%Y%m%dT%H%M%SZ")
    region = settings.OSS_REGION
    scope = f"{date_time[:8]}/{region}/oss/aliyun_v4_request"
    credential = quote(f"{settings.ALIBABA_ACCESS_KEY_ID}/{scope}", safe="")
    signing_key = _v4_signing_key(settings.ALIBABA_ACCESS_KEY_SECRET, date_time[:8], region)
    # The canonical query (sorted) and the URL's own order, as oss2 writes it.
    before = f"x-oss-credential={credential}&x-oss-date={date_time}&x-oss-expires={seconds}"
    after = "&x-oss-signature-version=OSS4-HMAC-SHA256\n\n\nUNSIGNED-PAYLOAD"
    url_params = (
        f"&x-oss-date={date_time}&x-oss-expires={seconds}"
        f"&x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-credential={credential}"
        "&x-oss-signature="
    )
    string_head = f"OSS4-HMAC-SHA256\n{date_time}\n{scope}\n"

    def sign(key: str) -> dict[str, str]:
        quoted_key = quote(key, safe="/")
        canonical_head = f"GET\n/{bucket}/{quoted_key}\n{before}&x-oss-process="
        path = prefix + quoted_key + "?x-oss-process="
        urls = {}
        for name, _, quoted_process in processes:
            canonical = f"{canonical_head}{quoted_process}{after}".encode()
            to_sign = (string_head + hashlib.sha256(canonical).hexdigest()).encode()
            signature = hmac.digest(signing_key, to_sign, "sha256").hex()
            urls[name] = f"{path}{quoted_process}{url_params}{signature}"
        return urls

    return sign
