"""PostObject: browser-style form upload with a signed policy.

The form carries its own credentials (OSSAccessKeyId + Signature over the base64 policy, or the
V4 fields x-oss-credential/x-oss-date/x-oss-signature) and a policy whose conditions OSS enforces:
expiration, bucket, eq, starts-with, content-length-range and exact matches on other fields.
The `file` field comes last; its content is streamed to storage, never buffered whole.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from emulator.oss.auth import MAX_SKEW_SECONDS, invalid_v4
from emulator.oss.checksums import content_md5_of, etag_of
from emulator.oss.errors import OssError, access_denied, invalid_argument
from emulator.oss.keys import check_key, guess_content_type
from emulator.oss.postpolicy import Policy, check_policy, check_v4_policy_fields, decode_policy
from emulator.oss.signing import parse_iso_basic, v4_signing_key
from emulator.oss.storage import ObjectRecord
from emulator.oss.wire import BodyReader, Request, Response
from emulator.oss.writes import authorize_write
from emulator.oss.xmlbody import render

if TYPE_CHECKING:
    from emulator.oss.service import OssService, Target

_MAX_FIELD = 64 * 1024
_MAX_PART_HEADERS = 16 * 1024
_MAX_FIELDS = 200
_READ = 1 << 16
V4_POST_MAX_AGE_SECONDS = 7 * 24 * 3600
# Form fields a policy never has to mention, as in OSS.
_FORM_META_FIELDS = frozenset(
    {"policy", "signature", "ossaccesskeyid", "file", "x-oss-signature", "submit"}
)


def _malformed(
    message: str = "The body of your POST request is not well-formed multipart/form-data.",
) -> OssError:
    return OssError(400, "MalformedPOSTRequest", message)


class _Multipart:
    """A minimal streaming multipart/form-data reader over a BodyReader."""

    def __init__(self, body: BodyReader, boundary: bytes) -> None:
        self._body = body
        self._delimiter = b"--" + boundary
        self._buffer = b""
        self._eof = False

    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self._body.read(_READ)
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def start(self) -> None:
        # Anything before the first delimiter is a preamble.
        while True:
            index = self._buffer.find(self._delimiter)
            if index >= 0:
                self._buffer = self._buffer[index + len(self._delimiter) :]
                return
            if len(self._buffer) > _MAX_PART_HEADERS or not self._fill():
                raise _malformed()

    def next_part(self) -> dict[str, str] | None:
        """Headers of the next part (lower-case names), or None after the closing delimiter."""
        while len(self._buffer) < 2 and self._fill():
            pass
        if self._buffer.startswith(b"--"):
            return None
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buffer) > _MAX_PART_HEADERS or not self._fill():
                raise _malformed()
        raw, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        headers: dict[str, str] = {}
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return headers

    def read(self, n: int = -1) -> bytes:
        """Data of the current part, up to its closing delimiter."""
        marker = b"\r\n" + self._delimiter
        while True:
            index = self._buffer.find(marker)
            if index >= 0:
                if index == 0:
                    return b""
                take = index if n < 0 else min(index, n)
                data, self._buffer = self._buffer[:take], self._buffer[take:]
                return data
            safe = len(self._buffer) - len(marker) + 1
            if safe > 0 and (n < 0 or safe >= min(n, _READ)):
                take = safe if n < 0 else min(safe, n)
                data, self._buffer = self._buffer[:take], self._buffer[take:]
                return data
            if not self._fill():
                raise _malformed("The multipart body ended inside a part.")

    def finish_part(self) -> None:
        """Skip the rest of the current part and its delimiter."""
        while self.read(_READ):
            pass
        marker = b"\r\n" + self._delimiter
        self._buffer = self._buffer[len(marker) :]
        while len(self._buffer) < 2 and self._fill():
            pass
        if self._buffer.startswith(b"\r\n"):
            self._buffer = self._buffer[2:]


def _disposition(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for match in re.finditer(r';\s*([\w*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))', value):
        params[match.group(1).lower()] = (
            match.group(2) if match.group(2) is not None else match.group(3).strip()
        )
    return params


def _boundary(content_type: str) -> bytes:
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type, re.IGNORECASE)
    if not match:
        raise _malformed("The Content-Type of a POST upload must carry a boundary.")
    boundary = (match.group(1) or match.group(2)).encode("latin-1", "replace")
    if not 1 <= len(boundary) <= 200:
        raise _malformed("The multipart boundary is not valid.")
    return boundary


def _authenticate(service: OssService, fields: dict[str, str], now: float) -> tuple[Any, Policy]:
    lowered = {name.lower(): value for name, value in fields.items()}
    policy_b64 = lowered.get("policy", "")
    if not policy_b64:
        raise access_denied("You have no right to access this resource: anonymous PostObject.")
    policy = decode_policy(policy_b64)
    token = lowered.get("x-oss-security-token") or None
    if lowered.get("x-oss-signature-version") == "OSS4-HMAC-SHA256":
        credential = lowered.get("x-oss-credential", "")
        date_time = lowered.get("x-oss-date", "")
        signature = lowered.get("x-oss-signature", "")
        access_key_id, _, scope = credential.partition("/")
        parts = scope.split("/")
        signed_at = parse_iso_basic(date_time)
        if signed_at is None or len(parts) != 4 or not signature:
            raise invalid_v4("A V4 PostObject needs x-oss-credential, x-oss-date, x-oss-signature.")
        if (
            parts[0] != date_time[:8]
            or parts[1] != service.config.region
            or parts[2:]
            != [
                "oss",
                "aliyun_v4_request",
            ]
        ):
            raise invalid_v4(f"Invalid credential scope {scope!r}.")
        # OSS accepts an x-oss-date up to 15 minutes ahead (clock skew) and 7 days old.
        if signed_at - now > MAX_SKEW_SECONDS:
            raise OssError(
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
            )
        if now - signed_at > V4_POST_MAX_AGE_SECONDS:
            raise access_denied("Request has expired: x-oss-date is more than 7 days old.")
        check_v4_policy_fields(policy, fields)
        principal = service.principal(access_key_id, token)
        key = v4_signing_key(principal.access_key_secret, parts[0], parts[1], parts[2])
        expected = hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()
    else:
        access_key_id = lowered.get("ossaccesskeyid", "")
        signature = lowered.get("signature", "")
        if not access_key_id or not signature:
            raise access_denied("A signed PostObject needs OSSAccessKeyId and Signature.")
        principal = service.principal(access_key_id, token)
        digest = hmac.new(
            principal.access_key_secret.encode(), policy_b64.encode(), hashlib.sha1
        ).digest()
        expected = base64.b64encode(digest).decode()
    if not hmac.compare_digest(expected, signature):
        raise OssError(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
            extra={"StringToSign": policy_b64, "OSSAccessKeyId": access_key_id},
        )
    return principal, policy


def post_object(service: OssService, request: Request, target: Target) -> Response:
    assert target.bucket is not None
    bucket = target.bucket
    service.storage.bucket(bucket)
    reader = _Multipart(request.body, _boundary(request.headers.get("content-type")))
    reader.start()
    fields: dict[str, str] = {}
    filename = ""
    file_type = ""
    while True:
        headers = reader.next_part()
        if headers is None:
            raise invalid_argument("The body of your POST request has no file field.")
        params = _disposition(headers.get("content-disposition", ""))
        name = params.get("name", "")
        if not name:
            raise _malformed()
        if name.lower() == "file":
            filename = params.get("filename", "")
            file_type = headers.get("content-type", "")
            break
        value = b""
        while len(value) <= _MAX_FIELD:
            data = reader.read(_READ)
            if not data:
                break
            value += data
        if len(value) > _MAX_FIELD:
            raise invalid_argument(f"The form field {name!r} is too large.")
        reader.finish_part()
        if len(fields) >= _MAX_FIELDS:
            raise invalid_argument("Too many form fields.")
        fields[name] = value.decode("utf-8", "replace")

    now = service.now()
    lowered = {name.lower(): value for name, value in fields.items()}
    key = lowered.get("key", "")
    if not key:
        raise invalid_argument("The form must carry a key field.", ArgumentName="key")
    key = key.replace("${filename}", filename)
    fields = {**fields, "key": key}
    principal, policy = _authenticate(service, fields, now)
    check_policy(policy, fields, bucket=bucket, now=now)
    low, high = policy.length_range
    check_key(key)
    forbid = authorize_write(service, principal, request, bucket=bucket, key=key, fields=lowered)
    callback_vars = {name: value for name, value in fields.items() if name.startswith("x:")}
    spec = None
    if lowered.get("callback"):
        var_b64 = None
        if callback_vars:
            var_b64 = base64.b64encode(json.dumps(callback_vars).encode()).decode()
        spec = service.parse_callback(lowered["callback"], var_b64)

    blob = service.storage.receive(reader, limit=high)
    reader.finish_part()
    if blob.size < low or blob.size > high:
        service.storage.discard(blob)
        code = "EntityTooSmall" if blob.size < low else "EntityTooLarge"
        raise OssError(
            400, code, f"Your proposed upload size {blob.size} is outside [{low}, {high}]."
        )
    content_type = lowered.get("content-type") or file_type
    user_meta = {
        name.lower(): v for name, v in fields.items() if name.lower().startswith("x-oss-meta-")
    }
    stored = {
        h: lowered[h]
        for h in ("cache-control", "content-disposition", "content-encoding", "expires")
        if h in lowered
    }
    template = ObjectRecord(
        key=key,
        size=blob.size,
        etag=etag_of(blob.md5),
        crc64=blob.crc64,
        content_type=content_type or guess_content_type(key),
        last_modified=now,
        object_type="Normal",
        segments=(),
        user_meta=user_meta,
        headers=stored,
    )
    record = service.storage.put(bucket, replace(template), blob, forbid_overwrite=forbid)
    headers = {
        "ETag": f'"{record.etag}"',
        "x-oss-hash-crc64ecma": str(record.crc64),
        "Content-MD5": content_md5_of(blob.md5),
    }
    if spec is not None:
        return service.respond_with_callback(
            request,
            spec=spec,
            bucket=bucket,
            record=record,
            operation="PostObject",
            headers=headers,
            principal=principal,
        )
    redirect = lowered.get("success_action_redirect")
    if redirect:
        separator = "&" if "?" in redirect else "?"
        location = f"{redirect}{separator}bucket={bucket}&key={key}&etag=%22{record.etag}%22"
        return Response(303, {**headers, "Location": location})
    status_text = lowered.get("success_action_status", "204")
    status = int(status_text) if status_text in ("200", "201", "204") else 204
    if status == 201:
        body = render(
            "PostResponse",
            [
                ("Bucket", bucket),
                ("Location", f"http://{bucket}.oss-{service.config.region}.aliyuncs.com/{key}"),
                ("Key", key),
                ("ETag", f'"{record.etag}"'),
            ],
        )
        return Response(201, {**headers, "Content-Type": "application/xml"}, body)
    return Response(status, headers)
