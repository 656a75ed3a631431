"""The OSS request pipeline: address → operation → signature → principal → policy → operation.

Every request ends as a Response or an OssError; the server turns the latter into error XML.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import quote, unquote

from emulator.config import EmulatorConfig
from emulator.oss import xmlbody
from emulator.oss.auth import parse_http_date, parse_signature
from emulator.oss.checksums import content_md5_of, etag_of
from emulator.oss.errors import (
    OssError,
    access_denied,
    invalid_argument,
    invalid_request,
)
from emulator.oss.keys import BUCKET_NAME, check_key, guess_content_type
from emulator.oss.postobject import post_object
from emulator.oss.storage import MAX_PART_NUMBER, Blob, ObjectRecord, Storage
from emulator.oss.wire import Request, Response
from emulator.oss.xmlbody import Node, http_time, iso_time, render

MAX_SINGLE_PUT = 5 * 1024**3
MAX_XML_BODY = 2 * 1024 * 1024
_STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)
_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
# Sub-resources the emulator does not implement: refused plainly rather than mistaken for a
# GetObject or PutObject.
_UNSUPPORTED = frozenset(
    [
        "acl",
        "tagging",
        "symlink",
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
        "x-oss-process",
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


class OssService:
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
        try:
            return self.resolve(access_key_id, security_token)
        except OssError:
            raise
        except Exception as exc:
            code = getattr(exc, "code", None)
            if code is None:
                raise
            raise OssError(
                getattr(exc, "status", 403), code, getattr(exc, "message", str(exc))
            ) from None

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
        unsupported = _UNSUPPORTED.intersection(query)
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
            if method == "POST":
                if "delete" in query:
                    return "DeleteMultipleObjects"
                if request.headers.get("content-type").lower().startswith("multipart/form-data"):
                    return "PostObject"
            raise OssError(405, "MethodNotAllowed", "The specified method is not allowed.")
        if method == "PUT":
            if "uploadId" in query and "partNumber" in query:
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
            content_type=_content_type(request, key),
            last_modified=self.now(),
            object_type="Normal",
            segments=(),
            user_meta=_user_meta(request),
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

    # -- service and bucket operations -----------------------------------------------------------

    def op_ListBuckets(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        if not principal.is_root:
            self.authorize(principal, request, action="oss:ListBuckets", bucket="*", key=None)
        buckets: list[Node] = []
        for name in self.storage.bucket_names():
            bucket = self.storage.bucket(name)
            buckets.append(
                (
                    "Bucket",
                    [
                        ("CreationDate", iso_time(bucket.created)),
                        ("ExtranetEndpoint", f"oss-{bucket.region}.aliyuncs.com"),
                        ("IntranetEndpoint", f"oss-{bucket.region}-internal.aliyuncs.com"),
                        ("Location", f"oss-{bucket.region}"),
                        ("Name", name),
                        ("Region", bucket.region),
                        ("StorageClass", "Standard"),
                    ],
                )
            )
        body = render(
            "ListAllMyBucketsResult",
            [("Owner", self._owner()), ("Buckets", buckets)],
        )
        return _xml(body)

    def _owner(self) -> list[Node]:
        return [("ID", self.config.account_id), ("DisplayName", self.config.account_id)]

    def op_PutBucket(self, request: Request, target: Target, principal: PrincipalLike) -> Response:
        assert target.bucket is not None
        self.authorize(principal, request, action="oss:PutBucket", bucket=target.bucket, key=None)
        request.body.read_all(MAX_XML_BODY)  # an optional CreateBucketConfiguration
        if not self.storage.create_bucket(target.bucket, region=self.config.region, now=self.now()):
            raise OssError(
                409,
                "BucketAlreadyExists",
                "The requested bucket name is not available.",
                extra={"BucketName": target.bucket},
            )
        return Response(200, {"Location": f"/{target.bucket}"})

    def op_GetBucketInfo(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket_name = self._bucket(target)
        self.authorize(principal, request, action="oss:GetBucketInfo", bucket=bucket_name, key=None)
        bucket = self.storage.bucket(bucket_name)
        if request.method == "HEAD":
            return Response(200, {})
        body = render(
            "BucketInfo",
            [
                (
                    "Bucket",
                    [
                        ("AccessMonitor", "Disabled"),
                        ("CreationDate", iso_time(bucket.created)),
                        ("ExtranetEndpoint", f"oss-{bucket.region}.aliyuncs.com"),
                        ("IntranetEndpoint", f"oss-{bucket.region}-internal.aliyuncs.com"),
                        ("Location", f"oss-{bucket.region}"),
                        ("StorageClass", "Standard"),
                        ("TransferAcceleration", "Disabled"),
                        ("CrossRegionReplication", "Disabled"),
                        ("Name", bucket.name),
                        ("DataRedundancyType", "LRS"),
                        ("Owner", self._owner()),
                        ("AccessControlList", [("Grant", "private")]),
                        ("Comment", ""),
                        ("BucketPolicy", [("LogBucket", ""), ("LogPrefix", "")]),
                    ],
                )
            ],
        )
        return _xml(body)

    def op_GetBucketLocation(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket_name = self._bucket(target)
        self.authorize(
            principal, request, action="oss:GetBucketLocation", bucket=bucket_name, key=None
        )
        bucket = self.storage.bucket(bucket_name)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<LocationConstraint>oss-{bucket.region}</LocationConstraint>"
        ).encode()
        return _xml(body)

    # -- listing ---------------------------------------------------------------------------------

    def _list_params(self, request: Request) -> tuple[str, str, int, bool]:
        query = request.query
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        max_keys_text = query.get("max-keys", "100")
        if not max_keys_text.isdigit() or not 0 <= int(max_keys_text) <= 1000:
            raise invalid_argument(
                "Argument max-keys must be an integer between 0 and 1000.",
                ArgumentName="max-keys",
                ArgumentValue=max_keys_text,
            )
        encoding = query.get("encoding-type", "")
        if encoding not in ("", "url"):
            raise invalid_argument(
                "The encoding-type parameter must be url.", ArgumentName="encoding-type"
            )
        return prefix, delimiter, int(max_keys_text), encoding == "url"

    def _authorize_list(
        self, principal: PrincipalLike, request: Request, bucket: str, prefix: str, delimiter: str
    ) -> None:
        self.authorize(
            principal,
            request,
            action="oss:ListObjects",
            bucket=bucket,
            key=None,
            context={"oss:Prefix": prefix, "oss:Delimiter": delimiter},
        )

    def _collect(
        self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[list[ObjectRecord], list[str], bool, str]:
        """Walk keys after `after`: (objects, common prefixes, truncated, last item returned)."""
        objects: list[ObjectRecord] = []
        prefixes: list[str] = []
        last = ""
        for record in self.storage.list_keys(bucket):
            key = record.key
            if key <= after or not key.startswith(prefix):
                continue
            common = None
            if delimiter:
                index = key.find(delimiter, len(prefix))
                if index >= 0:
                    common = key[: index + len(delimiter)]
            if common is not None:
                if common <= after or (prefixes and prefixes[-1] == common):
                    continue
                if len(objects) + len(prefixes) >= max_keys:
                    return objects, prefixes, True, last
                prefixes.append(common)
                last = common
                continue
            if len(objects) + len(prefixes) >= max_keys:
                return objects, prefixes, True, last
            objects.append(record)
            last = key
        return objects, prefixes, False, last

    def _contents(self, records: list[ObjectRecord], encode: Callable[[str], str]) -> list[Node]:
        return [
            (
                "Contents",
                [
                    ("Key", encode(r.key)),
                    ("LastModified", iso_time(r.last_modified)),
                    ("ETag", f'"{r.etag}"'),
                    ("Type", r.object_type),
                    ("Size", str(r.size)),
                    ("StorageClass", "Standard"),
                    ("Owner", self._owner()),
                ],
            )
            for r in records
        ]

    def op_ListObjects(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        prefix, delimiter, max_keys, url = self._list_params(request)
        self._authorize_list(principal, request, bucket, prefix, delimiter)
        marker = request.query.get("marker", "")
        objects, prefixes, truncated, last = self._collect(
            bucket, prefix=prefix, delimiter=delimiter, after=marker, max_keys=max_keys
        )
        encode = _url_encoder(url)
        children: list[Node] = [
            ("Name", bucket),
            ("Prefix", encode(prefix)),
            ("Marker", encode(marker)),
            ("MaxKeys", str(max_keys)),
            ("Delimiter", encode(delimiter)),
        ]
        if url:
            children.append(("EncodingType", "url"))
        children.append(("IsTruncated", "true" if truncated else "false"))
        if truncated:
            children.append(("NextMarker", encode(last)))
        children += self._contents(objects, encode)
        children += [("CommonPrefixes", [("Prefix", encode(p))]) for p in prefixes]
        return _xml(render("ListBucketResult", children))

    def op_ListObjectsV2(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        prefix, delimiter, max_keys, url = self._list_params(request)
        self._authorize_list(principal, request, bucket, prefix, delimiter)
        token = request.query.get("continuation-token") or None
        start_after = request.query.get("start-after", "")
        after = start_after
        if token is not None:
            try:
                after = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
            except (binascii.Error, ValueError):
                raise invalid_argument(
                    "The continuation token provided is incorrect.",
                    ArgumentName="continuation-token",
                ) from None
        objects, prefixes, truncated, last = self._collect(
            bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
        )
        encode = _url_encoder(url)
        children: list[Node] = [
            ("Name", bucket),
            ("Prefix", encode(prefix)),
            ("MaxKeys", str(max_keys)),
            ("Delimiter", encode(delimiter)),
        ]
        if start_after:
            children.append(("StartAfter", encode(start_after)))
        if token is not None:
            children.append(("ContinuationToken", token))
        if url:
            children.append(("EncodingType", "url"))
        children.append(("IsTruncated", "true" if truncated else "false"))
        if truncated:
            next_token = base64.urlsafe_b64encode(last.encode()).decode()
            children.append(("NextContinuationToken", next_token))
        children.append(("KeyCount", str(len(objects) + len(prefixes))))
        children += self._contents(objects, encode)
        children += [("CommonPrefixes", [("Prefix", encode(p))]) for p in prefixes]
        return _xml(render("ListBucketResult", children))

    # -- objects -------------------------------------------------------------------------------

    def op_PutObject(self, request: Request, target: Target, principal: PrincipalLike) -> Response:
        bucket = self._bucket(target)
        self.authorize(principal, request, action="oss:PutObject", bucket=bucket, key=target.key)
        self._require_length(request)
        spec = self.parse_callback(
            request.headers.get("x-oss-callback") or None,
            request.headers.get("x-oss-callback-var") or None,
        )
        forbid = request.headers.get("x-oss-forbid-overwrite").lower() == "true"
        if forbid and _exists(self.storage, bucket, target.key):
            raise _already_exists()
        blob = self._receive(request)
        template = self._new_record(request, target.key)
        record = self.storage.put(
            bucket,
            replace(template, size=blob.size, etag=etag_of(blob.md5), crc64=blob.crc64),
            blob,
            forbid_overwrite=forbid,
        )
        headers = {**self._write_headers(record), "Content-MD5": content_md5_of(blob.md5)}
        return self.respond_with_callback(
            request,
            spec=spec,
            bucket=bucket,
            record=record,
            operation="PutObject",
            headers=headers,
            principal=principal,
        )

    def op_AppendObject(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        self.authorize(principal, request, action="oss:PutObject", bucket=bucket, key=target.key)
        position_text = request.query.get("position", "")
        if not position_text.isdigit():
            raise invalid_argument(
                "Position must be a non-negative integer.", ArgumentName="position"
            )
        self._require_length(request)
        blob = self._receive(request)
        record = self.storage.append(
            bucket, self._new_record(request, target.key), blob, position=int(position_text)
        )
        headers = {
            **self._write_headers(record),
            "x-oss-next-append-position": str(record.size),
        }
        return Response(200, headers)

    def op_CopyObject(self, request: Request, target: Target, principal: PrincipalLike) -> Response:
        bucket = self._bucket(target)
        source = request.headers.get("x-oss-copy-source")
        source_path = unquote(source.split("?", 1)[0])
        source_bucket, _, source_key = source_path.lstrip("/").partition("/")
        if not source_bucket or not source_key:
            raise invalid_argument(
                "Copy Source must mention the source bucket and key: /bucket/key."
            )
        self.authorize(principal, request, action="oss:PutObject", bucket=bucket, key=target.key)
        self.authorize(
            principal, request, action="oss:GetObject", bucket=source_bucket, key=source_key
        )
        source_record = self.storage.get(source_bucket, source_key)
        _check_preconditions(request, source_record, prefix="x-oss-copy-source-")
        forbid = request.headers.get("x-oss-forbid-overwrite").lower() == "true"
        if forbid and _exists(self.storage, bucket, target.key):
            raise _already_exists()
        request.body.read_all(0)
        blob = self.storage.receive_copy(source_record)
        if request.headers.get("x-oss-metadata-directive").upper() == "REPLACE":
            template = self._new_record(request, target.key)
        else:
            template = replace(source_record, key=target.key, last_modified=self.now())
        record = self.storage.put(
            bucket,
            replace(
                template,
                size=blob.size,
                etag=etag_of(blob.md5),
                crc64=blob.crc64,
                object_type="Normal",
            ),
            blob,
            forbid_overwrite=forbid,
        )
        body = render(
            "CopyObjectResult",
            [("ETag", f'"{record.etag}"'), ("LastModified", iso_time(record.last_modified))],
        )
        response = _xml(body)
        response.headers.update(self._write_headers(record))
        return response

    def op_GetObject(self, request: Request, target: Target, principal: PrincipalLike) -> Response:
        bucket = self._bucket(target)
        self.authorize(principal, request, action="oss:GetObject", bucket=bucket, key=target.key)
        record, handles = self.storage.get_and_open(bucket, target.key)
        try:
            _check_preconditions(request, record, prefix="")
            headers = self.object_headers(record)
            for param, header in _RESPONSE_OVERRIDES.items():
                if param in request.query:
                    headers[header] = request.query[param]
            status = 200
            start, end = 0, record.size - 1
            byte_range = _parse_range(request.headers.get("range"), record.size, request)
            if byte_range is not None:
                start, end = byte_range
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{record.size}"
            slices = _slice(handles, start, end - start + 1)
        except BaseException:
            for handle, _, _ in handles:
                handle.close()
            raise
        return Response(status, headers, slices=slices)

    def op_HeadObject(self, request: Request, target: Target, principal: PrincipalLike) -> Response:
        bucket = self._bucket(target)
        self.authorize(principal, request, action="oss:GetObject", bucket=bucket, key=target.key)
        record = self.storage.get(bucket, target.key)
        _check_preconditions(request, record, prefix="")
        headers = self.object_headers(record)
        headers["Content-Length"] = str(record.size)
        return Response(200, headers)

    def op_GetObjectMeta(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        self.authorize(principal, request, action="oss:GetObject", bucket=bucket, key=target.key)
        record = self.storage.get(bucket, target.key)
        headers = {
            "ETag": f'"{record.etag}"',
            "Last-Modified": http_time(record.last_modified),
            "x-oss-hash-crc64ecma": str(record.crc64),
            "Content-Length": str(record.size),
        }
        return Response(200, headers)

    def op_DeleteObject(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        self.authorize(principal, request, action="oss:DeleteObject", bucket=bucket, key=target.key)
        self.storage.delete(bucket, target.key)
        return Response(204, {})

    def op_DeleteMultipleObjects(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        body = request.body.read_all(MAX_XML_BODY)
        sent_md5 = request.headers.get("content-md5")
        if not sent_md5:
            raise invalid_request("Missing required header for this request: Content-MD5.")
        if base64.b64encode(hashlib.md5(body).digest()).decode() != sent_md5:  # noqa: S324
            raise OssError(
                400,
                "InvalidDigest",
                "The Content-MD5 you specified did not match what we received.",
            )
        quiet, keys = xmlbody.parse_delete(body)
        # Every key must be deletable before any is deleted: a denied batch changes nothing.
        for key in keys:
            self.authorize(principal, request, action="oss:DeleteObject", bucket=bucket, key=key)
        for key in keys:
            self.storage.delete(bucket, key)
        encode = _url_encoder(request.query.get("encoding-type") == "url")
        children: list[Node] = []
        if request.query.get("encoding-type") == "url":
            children.append(("EncodingType", "url"))
        if not quiet:
            children += [("Deleted", [("Key", encode(key))]) for key in keys]
        return _xml(render("DeleteResult", children))

    # -- multipart -----------------------------------------------------------------------------

    def op_InitiateMultipartUpload(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        self.authorize(principal, request, action="oss:PutObject", bucket=bucket, key=target.key)
        request.body.read_all(MAX_XML_BODY)
        template = self._new_record(request, target.key)
        upload = self.storage.initiate(
            bucket,
            target.key,
            now=self.now(),
            content_type=template.content_type,
            user_meta=template.user_meta,
            headers=template.headers,
        )
        url = request.query.get("encoding-type") == "url"
        encode = _url_encoder(url)
        children: list[Node] = [("Bucket", bucket), ("Key", encode(target.key))]
        if url:
            children.append(("EncodingType", "url"))
        children.append(("UploadId", upload.upload_id))
        return _xml(render("InitiateMultipartUploadResult", children))

    def op_UploadPart(self, request: Request, target: Target, principal: PrincipalLike) -> Response:
        bucket = self._bucket(target)
        self.authorize(principal, request, action="oss:PutObject", bucket=bucket, key=target.key)
        number_text = request.query.get("partNumber", "")
        if not number_text.isdigit() or not 1 <= int(number_text) <= MAX_PART_NUMBER:
            raise invalid_argument(
                "Part number must be an integer between 1 and 10000, inclusive.",
                ArgumentName="partNumber",
                ArgumentValue=number_text,
            )
        upload_id = request.query.get("uploadId", "")
        self.storage.upload(bucket, target.key, upload_id)
        self._require_length(request)
        blob = self._receive(request)
        part = self.storage.put_part(
            bucket, target.key, upload_id, int(number_text), blob, now=self.now()
        )
        return Response(
            200,
            {
                "ETag": f'"{part.etag}"',
                "x-oss-hash-crc64ecma": str(part.crc64),
                "Content-MD5": content_md5_of(bytes.fromhex(part.md5_hex)),
            },
        )

    def op_CompleteMultipartUpload(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        self.authorize(principal, request, action="oss:PutObject", bucket=bucket, key=target.key)
        upload_id = request.query.get("uploadId", "")
        spec = self.parse_callback(
            request.headers.get("x-oss-callback") or None,
            request.headers.get("x-oss-callback-var") or None,
        )
        upload = self.storage.upload(bucket, target.key, upload_id)
        body = request.body.read_all(MAX_XML_BODY)
        if request.headers.get("x-oss-complete-all").lower() == "yes":
            if body.strip():
                raise invalid_argument("With x-oss-complete-all the body must be empty.")
            chosen = [(n, p.etag) for n, p in sorted(upload.parts.items())]
        else:
            chosen = xmlbody.parse_complete_multipart(body)
        forbid = request.headers.get("x-oss-forbid-overwrite").lower() == "true"
        record = self.storage.complete(
            bucket, target.key, upload_id, chosen, now=self.now(), forbid_overwrite=forbid
        )
        headers = self._write_headers(record)
        if spec is not None:
            return self.respond_with_callback(
                request,
                spec=spec,
                bucket=bucket,
                record=record,
                operation="CompleteMultipartUpload",
                headers=headers,
                principal=principal,
            )
        url = request.query.get("encoding-type") == "url"
        encode = _url_encoder(url)
        children: list[Node] = []
        if url:
            children.append(("EncodingType", "url"))
        children += [
            ("Location", f"{bucket}.oss-{self.config.region}.aliyuncs.com/{target.key}"),
            ("Bucket", bucket),
            ("Key", encode(target.key)),
            ("ETag", f'"{record.etag}"'),
        ]
        response = _xml(render("CompleteMultipartUploadResult", children))
        response.headers.update(headers)
        return response

    def op_AbortMultipartUpload(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        self.authorize(
            principal, request, action="oss:AbortMultipartUpload", bucket=bucket, key=target.key
        )
        self.storage.abort(bucket, target.key, request.query.get("uploadId", ""))
        return Response(204, {})

    def op_ListParts(self, request: Request, target: Target, principal: PrincipalLike) -> Response:
        bucket = self._bucket(target)
        self.authorize(principal, request, action="oss:ListParts", bucket=bucket, key=target.key)
        upload_id = request.query.get("uploadId", "")
        upload = self.storage.upload(bucket, target.key, upload_id)
        max_text = request.query.get("max-parts", "1000")
        marker_text = request.query.get("part-number-marker", "0") or "0"
        if not max_text.isdigit() or not 1 <= int(max_text) <= 1000:
            raise invalid_argument(
                "max-parts must be an integer between 1 and 1000.", ArgumentName="max-parts"
            )
        if not marker_text.isdigit():
            raise invalid_argument(
                "part-number-marker must be an integer.", ArgumentName="part-number-marker"
            )
        max_parts, marker = int(max_text), int(marker_text)
        parts = sorted(
            (p for n, p in list(upload.parts.items()) if n > marker), key=lambda p: p.number
        )
        truncated = len(parts) > max_parts
        parts = parts[:max_parts]
        next_marker = str(parts[-1].number) if parts else str(marker)
        url = request.query.get("encoding-type") == "url"
        encode = _url_encoder(url)
        children: list[Node] = [
            ("Bucket", bucket),
            ("Key", encode(target.key)),
            ("UploadId", upload_id),
            ("StorageClass", "Standard"),
            ("PartNumberMarker", str(marker)),
            ("NextPartNumberMarker", next_marker),
            ("MaxParts", str(max_parts)),
            ("IsTruncated", "true" if truncated else "false"),
        ]
        if url:
            children.append(("EncodingType", "url"))
        children += [
            (
                "Part",
                [
                    ("PartNumber", str(p.number)),
                    ("LastModified", iso_time(p.last_modified)),
                    ("ETag", f'"{p.etag}"'),
                    ("HashCrc64ecma", str(p.crc64)),
                    ("Size", str(p.size)),
                ],
            )
            for p in parts
        ]
        return _xml(render("ListPartsResult", children))

    def op_ListMultipartUploads(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        query = request.query
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        self.authorize(
            principal,
            request,
            action="oss:ListMultipartUploads",
            bucket=bucket,
            key=None,
            context={"oss:Prefix": prefix, "oss:Delimiter": delimiter},
        )
        key_marker = query.get("key-marker", "")
        upload_marker = query.get("upload-id-marker", "")
        max_text = query.get("max-uploads", "1000")
        if not max_text.isdigit() or not 1 <= int(max_text) <= 1000:
            raise invalid_argument(
                "max-uploads must be an integer between 1 and 1000.", ArgumentName="max-uploads"
            )
        max_uploads = int(max_text)
        uploads = []
        prefixes: list[str] = []
        truncated = False
        next_key, next_upload = "", ""
        for upload in self.storage.list_uploads(bucket):
            if not upload.key.startswith(prefix):
                continue
            if key_marker and (
                upload.key < key_marker
                or (
                    upload.key == key_marker
                    and (not upload_marker or upload.upload_id <= upload_marker)
                )
            ):
                continue
            common = None
            if delimiter:
                index = upload.key.find(delimiter, len(prefix))
                if index >= 0:
                    common = upload.key[: index + len(delimiter)]
            if common is not None and prefixes and prefixes[-1] == common:
                continue
            if len(uploads) + len(prefixes) >= max_uploads:
                truncated = True
                break
            if common is not None:
                prefixes.append(common)
                next_key, next_upload = common, ""
            else:
                uploads.append(upload)
                next_key, next_upload = upload.key, upload.upload_id
        url = query.get("encoding-type") == "url"
        encode = _url_encoder(url)
        children: list[Node] = [
            ("Bucket", bucket),
            ("KeyMarker", encode(key_marker)),
            ("UploadIdMarker", upload_marker),
            ("NextKeyMarker", encode(next_key if truncated else "")),
            ("NextUploadIdMarker", next_upload if truncated else ""),
            ("Delimiter", encode(delimiter)),
            ("Prefix", encode(prefix)),
            ("MaxUploads", str(max_uploads)),
            ("IsTruncated", "true" if truncated else "false"),
        ]
        if url:
            children.append(("EncodingType", "url"))
        children += [
            (
                "Upload",
                [
                    ("Key", encode(u.key)),
                    ("UploadId", u.upload_id),
                    ("StorageClass", "Standard"),
                    ("Initiated", iso_time(u.initiated)),
                ],
            )
            for u in uploads
        ]
        children += [("CommonPrefixes", [("Prefix", encode(p))]) for p in prefixes]
        return _xml(render("ListMultipartUploadsResult", children))


# -- module helpers ----------------------------------------------------------------------------


def _already_exists() -> OssError:
    return OssError(409, "FileAlreadyExists", "The object you specified already exists.")


def _exists(storage: Storage, bucket: str, key: str) -> bool:
    try:
        storage.get(bucket, key)
    except OssError:
        return False
    return True


def _xml(body: bytes) -> Response:
    return Response(200, {"Content-Type": "application/xml"}, body)


def _url_encoder(enabled: bool) -> Callable[[str], str]:
    if enabled:
        return lambda text: quote(text, safe="")
    return lambda text: text


def _content_type(request: Request, key: str) -> str:
    sent = request.headers.get("content-type")
    if sent:
        return sent
    return guess_content_type(key)


def _user_meta(request: Request) -> dict[str, str]:
    return {
        name: value for name, value in request.headers.items() if name.startswith("x-oss-meta-")
    }


def _parse_range(header: str, size: int, request: Request) -> tuple[int, int] | None:
    """(start, end) inclusive for a satisfiable single range; None means the whole object.

    OSS ignores an invalid or unsatisfiable range (200 with the whole object) unless the client
    asks for standard behaviour with x-oss-range-behavior: standard (then 416 InvalidRange).
    """
    if not header:
        return None
    standard = request.headers.get("x-oss-range-behavior").lower() == "standard"
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    result: tuple[int, int] | None = None
    if match:
        first, last = match.group(1), match.group(2)
        if first and (not last or int(last) >= int(first)):
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
            if start < size:
                result = (start, end)
        elif not first and last and int(last) > 0 and size > 0:
            result = (max(0, size - int(last)), size - 1)
    if result is None and standard:
        raise OssError(
            416,
            "InvalidRange",
            "The requested range is not satisfiable.",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return result


def _slice(handles: list, start: int, length: int) -> list:
    """Cut the object's blob list to [start, start + length)."""
    result = []
    position = 0
    for handle, _, size in handles:
        segment_start, segment_end = position, position + size
        position = segment_end
        lo = max(start, segment_start)
        hi = min(start + length, segment_end)
        if hi > lo:
            result.append((handle, lo - segment_start, hi - lo))
        else:
            handle.close()
    return result


def _check_preconditions(request: Request, record: ObjectRecord, *, prefix: str) -> None:
    headers = request.headers
    etag = f'"{record.etag}"'
    if_match = headers.get(f"{prefix}if-match")
    if if_match and if_match.strip() not in (etag, record.etag, "*"):
        raise OssError(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold.",
        )
    if_none_match = headers.get(f"{prefix}if-none-match")
    if if_none_match and if_none_match.strip() in (etag, record.etag, "*"):
        if prefix:
            raise OssError(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold.",
            )
        raise OssError(304, "NotModified", "The object was not modified.")
    modified_since = headers.get(f"{prefix}if-modified-since")
    since = parse_http_date(modified_since) if modified_since else None
    if since is not None and int(record.last_modified) <= since:
        if prefix:
            raise OssError(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold.",
            )
        raise OssError(304, "NotModified", "The object was not modified.")
    unmodified_since = headers.get(f"{prefix}if-unmodified-since")
    until = parse_http_date(unmodified_since) if unmodified_since else None
    if until is not None and int(record.last_modified) > until:
        raise OssError(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold.",
        )
