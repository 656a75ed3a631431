"""Multipart uploads: initiate, upload part, list parts, complete (with callback), abort, list."""

from __future__ import annotations

from emulator.oss import xmlbody
from emulator.oss.checksums import content_md5_of
from emulator.oss.errors import invalid_argument
from emulator.oss.pipeline import (
    MAX_XML_BODY,
    OssPipeline,
    PrincipalLike,
    Target,
    url_encoder,
    xml,
)
from emulator.oss.storage import MAX_PART_NUMBER
from emulator.oss.wire import Request, Response
from emulator.oss.writes import authorize_write
from emulator.oss.xmlbody import Node, iso_time, render


class MultipartOperations(OssPipeline):
    def op_InitiateMultipartUpload(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        authorize_write(self, principal, request, bucket=bucket, key=target.key)
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
        encode = url_encoder(url)
        children: list[Node] = [("Bucket", bucket), ("Key", encode(target.key))]
        if url:
            children.append(("EncodingType", "url"))
        children.append(("UploadId", upload.upload_id))
        return xml(render("InitiateMultipartUploadResult", children))

    def op_UploadPart(self, request: Request, target: Target, principal: PrincipalLike) -> Response:
        bucket = self._bucket(target)
        authorize_write(
            self, principal, request, bucket=bucket, key=target.key, overwrite_applies=False
        )
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
        forbid = authorize_write(self, principal, request, bucket=bucket, key=target.key)
        upload_id = request.query.get("uploadId", "")
        spec = self.parse_callback(
            request.headers.get("x-oss-callback") or None,
            request.headers.get("x-oss-callback-var") or None,
        )
        self.storage.upload(bucket, target.key, upload_id)
        body = request.body.read_all(MAX_XML_BODY)
        if request.headers.get("x-oss-complete-all").lower() == "yes":
            if body.strip():
                raise invalid_argument("With x-oss-complete-all the body must be empty.")
            parts = self.storage.parts(bucket, target.key, upload_id)
            chosen = [(p.number, p.etag) for p in parts]
        else:
            chosen = xmlbody.parse_complete_multipart(body)
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
        encode = url_encoder(url)
        children: list[Node] = []
        if url:
            children.append(("EncodingType", "url"))
        children += [
            ("Location", f"{bucket}.oss-{self.config.region}.aliyuncs.com/{target.key}"),
            ("Bucket", bucket),
            ("Key", encode(target.key)),
            ("ETag", f'"{record.etag}"'),
        ]
        response = xml(render("CompleteMultipartUploadResult", children))
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
        all_parts = self.storage.parts(bucket, target.key, upload_id)
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
        parts = [p for p in all_parts if p.number > marker]
        truncated = len(parts) > max_parts
        parts = parts[:max_parts]
        next_marker = str(parts[-1].number) if parts else str(marker)
        url = request.query.get("encoding-type") == "url"
        encode = url_encoder(url)
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
        return xml(render("ListPartsResult", children))

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
        encode = url_encoder(url)
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
        return xml(render("ListMultipartUploadsResult", children))
