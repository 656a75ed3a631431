"""OSS request signatures: V1 (HMAC-SHA1) and V4 (OSS4-HMAC-SHA256), in headers and in URLs.

Verification happens in two steps because the secret depends on who signed: `parse_signature`
reads the scheme, the AccessKey id, the security token and the time (refusing skewed or expired
requests), the server resolves the key to a principal, then `SignedRequest.verify(secret)`
recomputes the signature exactly as oss2 builds it (emulator/oss/signing.py, after oss2/auth.py)
and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from emulator.oss.errors import OssError, access_denied
from emulator.oss.signing import (
    V4_ALGORITHM,
    V4_TERMINATOR,
    _v1_signature,
    parse_http_date,
    parse_iso_basic,
    v1_string_to_sign,
    v4_signing_key,
    v4_string_to_sign,
)
from emulator.oss.wire import Request

MAX_SKEW_SECONDS = 15 * 60


def signature_mismatch(string_to_sign: str, access_key_id: str) -> OssError:
    return OssError(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        extra={"StringToSign": string_to_sign, "OSSAccessKeyId": access_key_id},
    )


@dataclass(frozen=True)
class SignedRequest:
    scheme: str  # "v1", "v1-url", "v4", "v4-url"
    access_key_id: str
    security_token: str | None
    _verify: Callable[[str], None]
    # When a header-signed request says it was signed; presigned URLs have their own expiry.
    signed_at: float | None = None

    def check_time(self, now: float) -> None:
        """Refuse a request signed more than 15 minutes away from `now`."""
        if self.signed_at is not None:
            _check_skew(self.signed_at, now)

    def verify(self, secret: str) -> None:
        """Raise SignatureDoesNotMatch unless the request was signed with `secret`."""
        self._verify(secret)


def _check_skew(signed_at: float, now: float) -> None:
    if abs(now - signed_at) > MAX_SKEW_SECONDS:
        raise OssError(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            extra={
                "RequestTime": datetime.fromtimestamp(signed_at, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%S.000Z"
                ),
                "ServerTime": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            },
        )


def _expired() -> OssError:
    return access_denied("Request has expired.")


def _parse_v4_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def _check_scope(credential: str, date_time: str, region: str) -> tuple[str, str]:
    """Split `AK/date/region/oss/aliyun_v4_request`; returns (access key id, scope)."""
    access_key_id, sep, scope = credential.partition("/")
    parts = scope.split("/")
    if not sep or not access_key_id or len(parts) != 4:
        raise invalid_v4(
            "Invalid credential in Authorization: the expected form is "
            "<AccessKeyId>/<date>/<region>/oss/aliyun_v4_request."
        )
    date, scope_region, product, terminator = parts
    if terminator != V4_TERMINATOR or product != "oss":
        raise invalid_v4(f"Invalid credential scope {scope!r}.")
    if date != date_time[:8]:
        raise invalid_v4(f"The date {date} of the credential scope does not match {date_time}.")
    if scope_region != region:
        raise invalid_v4(
            f"The region {scope_region!r} of the credential scope is not this endpoint's "
            f"region {region!r}."
        )
    return access_key_id, scope


def invalid_v4(message: str) -> OssError:
    return OssError(400, "InvalidArgument", message)


def parse_signature(
    request: Request, *, bucket: str | None, key: str, region: str, now: float
) -> SignedRequest | None:
    """Read how the request is signed; None for an anonymous request."""
    authorization = request.headers.get("authorization")
    query = request.query
    if authorization.startswith("OSS4-HMAC-SHA256"):
        return _v4_header(request, authorization, bucket=bucket, key=key, region=region, now=now)
    if authorization.startswith("OSS "):
        return _v1_header(request, authorization, bucket=bucket, key=key, now=now)
    if authorization:
        raise invalid_v4("The Authorization header is not a signature this endpoint supports.")
    if query.get("x-oss-signature-version") == V4_ALGORITHM:
        return _v4_url(request, bucket=bucket, key=key, region=region, now=now)
    if "OSSAccessKeyId" in query or "Signature" in query:
        return _v1_url(request, bucket=bucket, key=key, now=now)
    return None


def _v1_header(
    request: Request, authorization: str, *, bucket: str | None, key: str, now: float
) -> SignedRequest:
    access_key_id, sep, signature = authorization[4:].strip().rpartition(":")
    if not sep or not access_key_id or not signature:
        raise invalid_v4("The Authorization header is malformed.")
    date = request.headers.get("x-oss-date") or request.headers.get("date")
    # RFC 1123 as oss2, Android and iOS send it; some clients put ISO basic in x-oss-date.
    signed_at = (parse_http_date(date) or parse_iso_basic(date)) if date else None
    if signed_at is None:
        raise access_denied("The request must carry a valid Date header.")

    def verify(secret: str) -> None:
        string_to_sign = v1_string_to_sign(request, bucket, key, date)
        if not hmac.compare_digest(_v1_signature(secret, string_to_sign), signature):
            raise signature_mismatch(string_to_sign, access_key_id)

    return SignedRequest(
        "v1", access_key_id, request.headers.get("x-oss-security-token") or None, verify, signed_at
    )


def _v1_url(request: Request, *, bucket: str | None, key: str, now: float) -> SignedRequest:
    query = request.query
    access_key_id = query.get("OSSAccessKeyId", "")
    signature = query.get("Signature", "")
    expires = query.get("Expires", "")
    if not access_key_id or not signature or not expires.isdigit():
        raise access_denied("A presigned URL needs OSSAccessKeyId, Expires and Signature.")
    if int(expires) < now:
        raise _expired()

    def verify(secret: str) -> None:
        string_to_sign = v1_string_to_sign(request, bucket, key, expires)
        if not hmac.compare_digest(_v1_signature(secret, string_to_sign), signature):
            raise signature_mismatch(string_to_sign, access_key_id)

    return SignedRequest("v1-url", access_key_id, query.get("security-token") or None, verify)


def _v4_verifier(
    request: Request,
    *,
    bucket: str | None,
    key: str,
    access_key_id: str,
    signature: str,
    date_time: str,
    scope: str,
    additional: list[str],
    skip_query: frozenset[str],
) -> Callable[[str], None]:
    date, region, product, _ = scope.split("/")

    def verify(secret: str) -> None:
        string_to_sign = v4_string_to_sign(
            request,
            bucket,
            key,
            date_time=date_time,
            scope=scope,
            additional_headers=additional,
            skip_query=skip_query,
        )
        signing_key = v4_signing_key(secret, date, region, product)
        expected = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise signature_mismatch(string_to_sign, access_key_id)

    return verify


def _v4_header(
    request: Request,
    authorization: str,
    *,
    bucket: str | None,
    key: str,
    region: str,
    now: float,
) -> SignedRequest:
    fields = _parse_v4_fields(authorization[len(V4_ALGORITHM) :])
    credential = fields.get("Credential", "")
    signature = fields.get("Signature", "")
    if not credential or not signature:
        raise invalid_v4(
            "The OSS4-HMAC-SHA256 Authorization header needs Credential and Signature."
        )
    # oss2 sends x-oss-date; the Android SDK sends only Date, in the same ISO basic form.
    date_time = request.headers.get("x-oss-date") or request.headers.get("date")
    signed_at = parse_iso_basic(date_time) if date_time else None
    if signed_at is None:
        raise access_denied("V4 requests need x-oss-date (or Date) as YYYYMMDDTHHMMSSZ.")
    access_key_id, scope = _check_scope(credential, date_time, region)
    additional = [h.strip().lower() for h in fields.get("AdditionalHeaders", "").split(";") if h]
    verify = _v4_verifier(
        request,
        bucket=bucket,
        key=key,
        access_key_id=access_key_id,
        signature=signature,
        date_time=date_time,
        scope=scope,
        additional=additional,
        skip_query=frozenset(),
    )
    return SignedRequest(
        "v4", access_key_id, request.headers.get("x-oss-security-token") or None, verify, signed_at
    )


def _v4_url(
    request: Request, *, bucket: str | None, key: str, region: str, now: float
) -> SignedRequest:
    query = request.query
    credential = query.get("x-oss-credential", "")
    signature = query.get("x-oss-signature", "")
    date_time = query.get("x-oss-date", "")
    expires = query.get("x-oss-expires", "")
    signed_at = parse_iso_basic(date_time)
    if not credential or not signature or signed_at is None or not expires.isdigit():
        raise access_denied(
            "A V4 presigned URL needs x-oss-credential, x-oss-date, x-oss-expires and "
            "x-oss-signature."
        )
    if signed_at + int(expires) < now:
        raise _expired()
    if signed_at - now > MAX_SKEW_SECONDS:
        _check_skew(signed_at, now)
    access_key_id, scope = _check_scope(credential, date_time, region)
    additional = [
        h.strip().lower() for h in query.get("x-oss-additional-headers", "").split(";") if h
    ]
    verify = _v4_verifier(
        request,
        bucket=bucket,
        key=key,
        access_key_id=access_key_id,
        signature=signature,
        date_time=date_time,
        scope=scope,
        additional=additional,
        skip_query=frozenset({"x-oss-signature"}),
    )
    return SignedRequest("v4-url", access_key_id, query.get("x-oss-security-token") or None, verify)
