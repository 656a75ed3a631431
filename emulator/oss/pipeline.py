"""The OSS request pipeline: address → operation → signature → principal → policy → operation.

Every request ends as a Response or an OssError; the server turns the latter into error XML.
The operations themselves live in buckets.py, listing.py, objects.py and multipart.py, as
mixins of the pipeline; service.OssService puts them together.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, unquote

from emulator.config import EmulatorConfig
from emulator.oss.auth import parse_signature
from emulator.oss.checksums import content_md5_of
from emulator.oss.errors import (
    OssError,
    access_denied,
    invalid_argument,
)
from emulator.oss.keys import BUCKET_NAME, check_key, guess_content_type
from emulator.oss.postobject import post_object
from emulator.oss.storage import Blob, ObjectRecord, Storage
from emulator.oss.wire import Request, Response
from emulator.oss.writes import authorize_unimplemented_write
from emulator.oss.xmlbody import http_time, iso_time

MAX_SINGLE_PUT = 5 * 1024**3
MAX_XML_BODY = 2 * 1024 * 1024
_STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)
# Sub-resources the emulator does not implement: refused plainly rather than mistaken for a
# GetObject or PutObject.
_UNSUPPORTED = frozenset(
    [
        "acl",
        "tagging",
        "restore",
        "cors",
        "lifecycle",
        "logging",
        "website",
        "referer",
        "policy",
        "versioning",
        "versions",
        "versionId",
        "encryption",
        "replication",
        "inventory",
        "worm",
        "qos",
        "stat",
        "objectInfo",
    ]
)


class PrincipalLike(Protocol):
    access_key_id: str
    access_key_secret: str
    is_root: bool
    policies: tuple[tuple[str, dict], ...]


Resolver = Callable[[str, "str | None"], PrincipalLike]
Authorizer = Callable[..., Any]


@dataclass(frozen=True)
class Target:
    bucket: str | None
    key: str  # "" for bucket-level requests


class OssPipeline:
    def __init__(
        self,
        *,
        config: EmulatorConfig,
        storage: Storage,
        now: Callable[[], float],
        resolve: Resolver,
        evaluate: Authorizer,
        callbacks: Any = None,
    ) -> None:
        self.config = config
        self.storage = storage
        self.now = now
        self.resolve = resolve
        self.evaluate = evaluate
        self.callbacks = callbacks  # emulator.server.CallbackHook, or None

    # -- addressing ----------------------------------------------------------------------------

    def target(self, request: Request) -> Target:
        try:
            path = unquote(request.raw_path, errors="strict")
        except UnicodeDecodeError:
            raise OssError(
                400, "InvalidObjectName", "The object name is not valid UTF-8."
            ) from None
        host = request.headers.get("host").rsplit(":", 1)[0].strip("[]").lower()
        vhost_bucket = self._virtual_host_bucket(host)
        if vhost_bucket is not None:
            return Target(vhost_bucket, path[1:] if path.startswith("/") else path)
        stripped = path[1:] if path.startswith("/") else path
        if not stripped:
            return Target(None, "")
        bucket, _, key = stripped.partition("/")
        return Target(bucket, key)

    def _virtual_host_bucket(self, host: str) -> str | None:
        if not host or host.replace(".", "").isdigit() or ":" in host or "." not in host:
            return None
        first, _, rest = host.partition(".")
        if not BUCKET_NAME.match(first):
            return None
        if rest == "localhost" or first in self.storage.bucket_names():
            return first
        return None

    # -- the pipeline ----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        target = self.target(request)
        if target.key:
            check_key(target.key)
        if target.bucket is not None and not BUCKET_NAME.match(target.bucket):
            raise OssError(400, "InvalidBucketName", "The specified bucket is not valid.")
        if target.key:
            authorize_unimplemented_write(self, request, target)
        operation = self._operation(request, target)
        if operation == "PostObject":
            return post_object(self, request, target)
        principal = self.authenticate(request, target)
        handler = getattr(self, f"op_{operation}")
        return handler(request, target, principal)

    def authenticate(self, request: Request, target: Target) -> PrincipalLike:
        signed = parse_signature(
            request,
            bucket=target.bucket,
            key=target.key,
            region=self.config.region,
            now=self.now(),
        )
        if signed is None:
            # Every emulated bucket is private, as a new OSS bucket is.
            raise access_denied("You have no right to access this resource: anonymous access.")
        # The token is judged before the request time: a test (or a client) that sees its token
        # expire learns that, rather than a skew caused by the emulator's moved clock.
        principal = self.principal(signed.access_key_id, signed.security_token)
        signed.check_time(self.now())
        signed.verify(principal.access_key_secret)
        return principal

    def principal(self, access_key_id: str, security_token: str | None) -> PrincipalLike:
        """Who signed: raises OssError (InvalidAccessKeyId, InvalidSecurityToken, ...)."""
        return self.resolve(access_key_id, security_token)

    def authorize(
        self,
        principal: PrincipalLike,
        request: Request,
        *,
        action: str,
        bucket: str,
        key: str | None,
        context: dict[str, str] | None = None,
    ) -> None:
        if principal.is_root:
            return
        account = self.config.account_id
        resource = f"acs:oss:{self.config.region}:{account}:{bucket}"
        if key is not None:
            resource += f"/{key}"
        full_context = {
            "acs:SourceIp": request.client_ip,
            "acs:SecureTransport": "false",
            "acs:CurrentTime": iso_time(self.now()),
            **(context or {}),
        }
        decision = self.evaluate(
            principal.policies, action=action, resource=resource, context=full_context
        )
        if not decision.allowed:
            raise access_denied(
                f"You have no right to access this object because of bucket acl or policy: "
                f"{action} on {resource} is denied ({decision.reason})."
            )

    def _operation(self, request: Request, target: Target) -> str:
        method = request.method
        query = request.query
        unsupported = set(_UNSUPPORTED.intersection(query))
        if "x-oss-process" in query and method not in ("GET", "HEAD"):
            unsupported.add("x-oss-process")  # ProcessObject (sys/saveas) and the like
        if unsupported:
            raise OssError(
                400,
                "NotImplemented",
                f"The emulator does not implement the ?{sorted(unsupported)[0]} sub-resource.",
            )
        if target.bucket is None:
            if method in ("GET", "HEAD"):
                return "ListBuckets"
            raise OssError(405, "MethodNotAllowed", "The specified method is not allowed.")
        if not target.key:
            if method == "PUT" and not query:
                return "PutBucket"
            if method == "GET":
                if "bucketInfo" in query:
                    return "GetBucketInfo"
                if "location" in query:
                    return "GetBucketLocation"
                if "uploads" in query:
                    return "ListMultipartUploads"
                if query.get("list-type") == "2":
                    return "ListObjectsV2"
                return "ListObjects"
            if method == "HEAD":
                return "GetBucketInfo"
            if method == "DELETE" and not query:
                return "DeleteBucket"
            if method == "POST":
                if "delete" in query:
                    return "DeleteMultipleObjects"
                if request.headers.get("content-type").lower().startswith("multipart/form-data"):
                    return "PostObject"
            raise OssError(405, "MethodNotAllowed", "The specified method is not allowed.")
        if "symlink" in query:
            if method == "PUT":
                return "PutSymlink"
            raise OssError(400, "NotImplemented", "The emulator does not store symbolic links.")
        if method == "PUT":
            if "uploadId" in query and "partNumber" in query:
                if "x-oss-copy-source" in request.headers:
                    raise OssError(
                        400, "NotImplemented", "The emulator does not implement UploadPartCopy."
                    )
                return "UploadPart"
            if "x-oss-copy-source" in request.headers:
                return "CopyObject"
            return "PutObject"
        if method == "POST":
            if "uploads" in query:
                return "InitiateMultipartUpload"
            if "uploadId" in query:
                return "CompleteMultipartUpload"
            if "append" in query:
                return "AppendObject"
        if method == "GET":
            if "uploadId" in query:
                return "ListParts"
            return "GetObject"
        if method == "HEAD":
            return "GetObjectMeta" if "objectMeta" in query else "HeadObject"
        if method == "DELETE":
            return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
        raise OssError(405, "MethodNotAllowed", "The specified method is not allowed.")

    # -- helpers ---------------------------------------------------------------------------------

    def _bucket(self, target: Target) -> str:
        assert target.bucket is not None
        self.storage.bucket(target.bucket)
        return target.bucket

    def _receive(self, request: Request, *, limit: int = MAX_SINGLE_PUT) -> Blob:
        body = request.body
        if body.declared_length is not None and body.declared_length > limit:
            raise OssError(400, "EntityTooLarge", "Your proposed upload exceeds the limit.")
        blob = self.storage.receive(body, limit=limit)
        sent_md5 = request.headers.get("content-md5")
        if sent_md5:
            try:
                expected = base64.b64decode(sent_md5, validate=True)
            except (binascii.Error, ValueError):
                expected = b""
            if len(expected) != 16:
                self.storage.discard(blob)
                raise OssError(400, "InvalidDigest", "The Content-MD5 you specified is not valid.")
            if not hmac.compare_digest(expected, blob.md5):
                self.storage.discard(blob)
                raise OssError(
                    400,
                    "InvalidDigest",
                    "The Content-MD5 you specified did not match what we received.",
                )
        return blob

    def _require_length(self, request: Request) -> None:
        if request.body.declared_length is None:
            return  # chunked
        if "content-length" not in request.headers:
            raise OssError(
                411, "MissingContentLength", "You must provide the Content-Length HTTP header."
            )

    def _new_record(self, request: Request, key: str, blob_size: int = 0) -> ObjectRecord:
        return ObjectRecord(
            key=key,
            size=blob_size,
            etag="",
            crc64=0,
            content_type=content_type(request, key),
            last_modified=self.now(),
            object_type="Normal",
            segments=(),
            user_meta=user_meta(request),
            headers={h: request.headers.get(h) for h in _STORED_HEADERS if h in request.headers},
        )

    def _write_headers(self, record: ObjectRecord) -> dict[str, str]:
        return {
            "ETag": f'"{record.etag}"',
            "x-oss-hash-crc64ecma": str(record.crc64),
        }

    def object_headers(self, record: ObjectRecord) -> dict[str, str]:
        headers = {
            "Content-Type": record.content_type,
            "ETag": f'"{record.etag}"',
            "Last-Modified": http_time(record.last_modified),
            "x-oss-object-type": record.object_type,
            "x-oss-storage-class": "Standard",
            "x-oss-hash-crc64ecma": str(record.crc64),
            "Accept-Ranges": "bytes",
        }
        if record.object_type == "Appendable":
            headers["x-oss-next-append-position"] = str(record.size)
        if record.object_type == "Normal" and "-" not in record.etag:
            headers["Content-MD5"] = content_md5_of(bytes.fromhex(record.etag))
        for name, value in record.headers.items():
            headers[name.title()] = value
        headers.update(record.user_meta)
        return headers

    def respond_with_callback(
        self,
        request: Request,
        *,
        spec: Any,
        bucket: str,
        record: ObjectRecord,
        operation: str,
        headers: dict[str, str],
        principal: PrincipalLike,
    ) -> Response:
        if spec is None or self.callbacks is None:
            return Response(200, headers)
        status, content_type, body = self.callbacks.send(
            spec,
            request=request,
            bucket=bucket,
            record=record,
            operation=operation,
            requester=principal.access_key_id,
        )
        return Response(status, {**headers, "Content-Type": content_type}, body)

    def parse_callback(self, callback: str | None, callback_var: str | None) -> Any:
        if not callback:
            return None
        if self.callbacks is None:
            raise invalid_argument("Upload callbacks are not available in this emulator build.")
        return self.callbacks.parse(callback, callback_var)


def xml(body: bytes) -> Response:
    return Response(200, {"Content-Type": "application/xml"}, body)


def url_encoder(enabled: bool) -> Callable[[str], str]:
    if enabled:
        return lambda text: quote(text, safe="")
    return lambda text: text


def content_type(request: Request, key: str) -> str:
    sent = request.headers.get("content-type")
    if sent:
        return sent
    return guess_content_type(key)


def user_meta(request: Request) -> dict[str, str]:
    return {
        name: value for name, value in request.headers.items() if name.startswith("x-oss-meta-")
    }


def exists(storage: Storage, bucket: str, key: str) -> bool:
    try:
        storage.get(bucket, key)
    except OssError:
        return False
    return True


def already_exists() -> OssError:
    return OssError(409, "FileAlreadyExists", "The object you specified already exists.")
