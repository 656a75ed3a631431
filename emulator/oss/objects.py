"""Object operations: Put, Append, Copy, Get (ranges, conditions, overrides), Head, Meta, Delete."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import replace
from urllib.parse import unquote

from emulator.oss import imaging, xmlbody
from emulator.oss.checksums import content_md5_of, etag_of
from emulator.oss.errors import OssError, invalid_argument, invalid_request
from emulator.oss.pipeline import (
    MAX_XML_BODY,
    OssPipeline,
    PrincipalLike,
    Target,
    already_exists,
    exists,
    url_encoder,
    xml,
)
from emulator.oss.signing import parse_http_date
from emulator.oss.storage import ObjectRecord
from emulator.oss.wire import Request, Response
from emulator.oss.writes import authorize_write
from emulator.oss.xmlbody import Node, http_time, iso_time, render

# Query parameters of GetObject that override the response's headers.
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


class ObjectOperations(OssPipeline):
    def op_PutObject(self, request: Request, target: Target, principal: PrincipalLike) -> Response:
        bucket = self._bucket(target)
        forbid = authorize_write(self, principal, request, bucket=bucket, key=target.key)
        self._require_length(request)
        spec = self.parse_callback(
            request.headers.get("x-oss-callback") or None,
            request.headers.get("x-oss-callback-var") or None,
        )
        if forbid and exists(self.storage, bucket, target.key):
            raise already_exists()
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
        authorize_write(self, principal, request, bucket=bucket, key=target.key)
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
        forbid = authorize_write(self, principal, request, bucket=bucket, key=target.key)
        self.authorize(
            principal, request, action="oss:GetObject", bucket=source_bucket, key=source_key
        )
        _check_preconditions(
            request, self.storage.get(source_bucket, source_key), prefix="x-oss-copy-source-"
        )
        if forbid and exists(self.storage, bucket, target.key):
            raise already_exists()
        request.body.read_all(0)
        # The record and the bytes copied are taken together, whatever overwrites the source.
        source_record, blob = self.storage.receive_copy(source_bucket, source_key)
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
        response = xml(body)
        response.headers.update(self._write_headers(record))
        return response

    def op_PutSymlink(self, request: Request, target: Target, principal: PrincipalLike) -> Response:
        # Authorized and checked for overwrite as OSS does; symlinks themselves are not stored.
        bucket = self._bucket(target)
        forbid = authorize_write(self, principal, request, bucket=bucket, key=target.key)
        if forbid and exists(self.storage, bucket, target.key):
            raise already_exists()
        raise OssError(400, "NotImplemented", "The emulator does not store symbolic links.")

    def op_GetObject(self, request: Request, target: Target, principal: PrincipalLike) -> Response:
        bucket = self._bucket(target)
        self.authorize(principal, request, action="oss:GetObject", bucket=bucket, key=target.key)
        record, handles = self.storage.get_and_open(bucket, target.key)
        if "x-oss-process" in request.query:
            return self._processed(request, record, handles)
        try:
            _check_preconditions(request, record, prefix="")
            headers = self.object_headers(record)
            for param, header in RESPONSE_OVERRIDES.items():
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

    def _processed(self, request: Request, record: ObjectRecord, handles: list) -> Response:
        """GetObject with x-oss-process: the derived image, never the stored bytes."""
        try:
            _check_preconditions(request, record, prefix="")
            steps = imaging.parse_process(request.query["x-oss-process"], self.config.image_styles)
            if record.size > imaging.MAX_SOURCE_BYTES:
                raise imaging.source_too_large()
            result = imaging.process(
                lambda: b"".join(handle.read(size) for handle, _, size in handles), steps
            )
        finally:
            for handle, _, _ in handles:
                handle.close()
        # The derived bytes have no stored checksum: no ETag, Content-MD5 or CRC-64 of the
        # original, which SDKs would check the body against.
        headers = {
            "Content-Type": result.content_type,
            "Last-Modified": http_time(record.last_modified),
        }
        return Response(200, headers, result.body)

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
        encode = url_encoder(request.query.get("encoding-type") == "url")
        children: list[Node] = []
        if request.query.get("encoding-type") == "url":
            children.append(("EncodingType", "url"))
        if not quiet:
            children += [("Deleted", [("Key", encode(key))]) for key in keys]
        return xml(render("DeleteResult", children))


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


def _precondition_failed() -> OssError:
    return OssError(
        412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold."
    )


def _unchanged(prefix: str) -> OssError:
    # A GET's If-None-Match / If-Modified-Since answer 304; CopyObject's x-oss-copy-source-*
    # forms of the same conditions answer 412.
    if prefix:
        return _precondition_failed()
    return OssError(304, "NotModified", "The object was not modified.")


def _check_preconditions(request: Request, record: ObjectRecord, *, prefix: str) -> None:
    headers = request.headers
    etag = f'"{record.etag}"'
    if_match = headers.get(f"{prefix}if-match")
    if if_match and if_match.strip() not in (etag, record.etag, "*"):
        raise _precondition_failed()
    if_none_match = headers.get(f"{prefix}if-none-match")
    if if_none_match and if_none_match.strip() in (etag, record.etag, "*"):
        raise _unchanged(prefix)
    modified_since = headers.get(f"{prefix}if-modified-since")
    since = parse_http_date(modified_since) if modified_since else None
    if since is not None and int(record.last_modified) <= since:
        raise _unchanged(prefix)
    unmodified_since = headers.get(f"{prefix}if-unmodified-since")
    until = parse_http_date(unmodified_since) if unmodified_since else None
    if until is not None and int(record.last_modified) > until:
        raise _precondition_failed()
