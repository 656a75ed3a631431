"""What an OSS signature is computed over: V1's canonical resource and string to sign, V4's
canonical request, scope and signing key, and the dates requests carry, as oss2 builds them
(oss2/auth.py). emulator/oss/auth.py verifies with these."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote

from emulator.oss.wire import Request

V4_ALGORITHM = "OSS4-HMAC-SHA256"
V4_TERMINATOR = "aliyun_v4_request"

# Query parameters that V1 signs (oss2's ProviderAuth._subresource_key_set); the others are not.
V1_SUBRESOURCES = frozenset(
    [
        "acl",
        "uploadId",
        "uploads",
        "partNumber",
        "group",
        "link",
        "delete",
        "website",
        "location",
        "objectInfo",
        "objectMeta",
        "response-content-type",
        "response-content-language",
        "response-cache-control",
        "logging",
        "response-content-encoding",
        "response-expires",
        "response-content-disposition",
        "cors",
        "lifecycle",
        "restore",
        "qos",
        "referer",
        "stat",
        "bucketInfo",
        "append",
        "position",
        "security-token",
        "live",
        "comp",
        "status",
        "vod",
        "startTime",
        "endTime",
        "x-oss-process",
        "symlink",
        "callback",
        "callback-var",
        "tagging",
        "encryption",
        "versions",
        "versioning",
        "versionId",
        "policy",
        "requestPayment",
        "x-oss-traffic-limit",
        "qosInfo",
        "asyncFetch",
        "x-oss-request-payer",
        "sequential",
        "inventory",
        "inventoryId",
        "continuation-token",
        "worm",
        "wormId",
        "wormExtend",
        "replication",
        "replicationLocation",
        "replicationProgress",
        "transferAcceleration",
        "cname",
        "metaQuery",
        "x-oss-ac-source-ip",
        "x-oss-ac-subnet-mask",
        "x-oss-ac-vpc-id",
        "x-oss-ac-forward-allow",
        "resourceGroup",
        "style",
        "styleName",
        "x-oss-async-process",
        "regionList",
        "x-oss-write-get-object-response",
        "bucketArchiveDirectRead",
        "httpsConfig",
        "redundancyTransition",
        "x-oss-target-redundancy-type",
        "x-oss-redundancy-transition-taskid",
        "accessPoint",
        "accessPointPolicy",
        "publicAccessBlock",
        "x-oss-access-point-name",
        "requesterQosInfo",
        "qosRequester",
        "resourcePoolInfo",
        "resourcePool",
        "resourcePoolBuckets",
    ]
)

_V4_SIGNED_BY_DEFAULT = ("content-type", "content-md5")


def _v1_signature(secret: str, string_to_sign: str) -> str:
    digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def v1_resource(bucket: str | None, key: str, query_items: list[tuple[str, str]]) -> str:
    base = f"/{bucket}/{key}" if bucket else "/"
    subresources = sorted((k, v) for k, v in query_items if k in V1_SUBRESOURCES)
    if not subresources:
        return base
    return base + "?" + "&".join(f"{k}={v}" if v else k for k, v in subresources)


def v1_string_to_sign(request: Request, bucket: str | None, key: str, date: str) -> str:
    canonical_headers = sorted(
        (name, value.strip())
        for name, value in request.headers.items()
        if name.startswith("x-oss-")
    )
    headers_part = "".join(f"{name}:{value}\n" for name, value in canonical_headers)
    return "\n".join(
        [
            request.method,
            request.headers.get("content-md5"),
            request.headers.get("content-type"),
            date,
            headers_part + v1_resource(bucket, key, request.query_items),
        ]
    )


def _v4_encode(text: str, *, keep_slash: bool) -> str:
    # UTF-8, everything but ASCII letters, digits and "_-~." (and "/" in paths) as %XX.
    return quote(text, safe="/" if keep_slash else "")


# A day's key per credential, as OSS derives it: four HMACs that every request would repeat.
@lru_cache(maxsize=1024)
def v4_signing_key(secret: str, date: str, region: str, product: str) -> bytes:
    key = hmac.new(f"aliyun_v4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    key = hmac.new(key, region.encode(), hashlib.sha256).digest()
    key = hmac.new(key, product.encode(), hashlib.sha256).digest()
    return hmac.new(key, V4_TERMINATOR.encode(), hashlib.sha256).digest()


def v4_string_to_sign(
    request: Request,
    bucket: str | None,
    key: str,
    *,
    date_time: str,
    scope: str,
    additional_headers: list[str],
    skip_query: frozenset[str] = frozenset(),
) -> str:
    uri = _v4_encode(f"/{bucket}/{key}" if bucket else "/", keep_slash=True)
    params = sorted(
        (_v4_encode(k, keep_slash=False), _v4_encode(v, keep_slash=False))
        for k, v in request.query_items
        if k not in skip_query
    )
    query = "&".join(f"{k}={v}" if v else k for k, v in params)
    extra = set(additional_headers)
    signed = sorted(
        (name, value.strip())
        for name, value in request.headers.items()
        if name.startswith("x-oss-") or name in _V4_SIGNED_BY_DEFAULT or name in extra
    )
    canonical = "\n".join(
        [
            request.method,
            uri,
            query,
            "".join(f"{name}:{value}\n" for name, value in signed),
            ";".join(sorted(extra)),
            request.headers.get("x-oss-content-sha256") or "UNSIGNED-PAYLOAD",
        ]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{V4_ALGORITHM}\n{date_time}\n{scope}\n{digest}"


def parse_http_date(text: str) -> float | None:
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_iso_basic(text: str) -> float | None:
    """`20261129T033310Z` as a timestamp; None for anything else (strptime cost a tenth of a
    HeadObject's handling)."""
    digits = text[:8] + text[9:15]
    if len(text) != 16 or text[8] != "T" or text[15] != "Z" or not digits.isascii():
        return None
    if not digits.isdigit():
        return None
    try:
        return datetime(
            int(text[:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=UTC,
        ).timestamp()
    except ValueError:
        return None
