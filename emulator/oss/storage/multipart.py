"""Multipart uploads in the storage: initiating, parts, listing, aborting, and completing them
into an object that adopts the parts' blobs without copying a byte."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable
from pathlib import Path

from emulator.oss.checksums import crc64_combine, multipart_etag
from emulator.oss.errors import OssError, no_such_upload
from emulator.oss.storage.records import (
    Blob,
    BucketRecord,
    ObjectRecord,
    PartRecord,
    Segment,
    UploadRecord,
    atomic_write_json,
)

MIN_PART_SIZE = 100 * 1024  # OSS refuses smaller parts, except the last one
MAX_PART_NUMBER = 10000


class MultipartUploads:
    """Storage's multipart half (Storage mixes it in): the uploads in progress and their files.

    What it uses of Storage is declared here: the lock of the bucket and upload tables, the
    upload table and its directory, and the methods below, which Storage defines.
    """

    _lock: threading.RLock
    _uploads: dict[str, UploadRecord]
    _uploads_dir: Path

    def bucket(self, name: str) -> BucketRecord:
        raise NotImplementedError

    def discard(self, blob: Blob) -> None:
        raise NotImplementedError

    def _adopt(self, blob: Blob) -> str:
        raise NotImplementedError

    def _drop_blobs(self, names: Iterable[str]) -> None:
        raise NotImplementedError

    def _write_record(self, bucket: BucketRecord, record: ObjectRecord) -> None:
        raise NotImplementedError

    def initiate(
        self,
        bucket_name: str,
        key: str,
        *,
        now: float,
        content_type: str,
        user_meta: dict[str, str],
        headers: dict[str, str],
    ) -> UploadRecord:
        self.bucket(bucket_name)
        upload = UploadRecord(
            upload_id=secrets.token_hex(16).upper(),
            bucket=bucket_name,
            key=key,
            initiated=now,
            content_type=content_type,
            user_meta=user_meta,
            headers=headers,
        )
        with self._lock:
            self._uploads[upload.upload_id] = upload
            atomic_write_json(self._uploads_dir / f"{upload.upload_id}.json", upload.to_json())
        return upload

    def upload(self, bucket_name: str, key: str, upload_id: str) -> UploadRecord:
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None or upload.bucket != bucket_name or upload.key != key:
                raise no_such_upload(upload_id)
            return upload

    def parts(self, bucket_name: str, key: str, upload_id: str) -> list[PartRecord]:
        """The upload's parts in part-number order, as of now."""
        with self._lock:
            upload = self.upload(bucket_name, key, upload_id)
            return [upload.parts[n] for n in sorted(upload.parts)]

    def put_part(
        self, bucket_name: str, key: str, upload_id: str, number: int, blob: Blob, *, now: float
    ) -> PartRecord:
        with self._lock:
            try:
                upload = self.upload(bucket_name, key, upload_id)
            except OssError:
                self.discard(blob)
                raise
            part = PartRecord(
                number=number,
                blob=self._adopt(blob),
                size=blob.size,
                etag=blob.md5.hex().upper(),
                md5_hex=blob.md5.hex(),
                crc64=blob.crc64,
                last_modified=now,
            )
            old = upload.parts.get(number)
            upload.parts[number] = part
            atomic_write_json(self._uploads_dir / f"{upload_id}.json", upload.to_json())
            if old is not None:
                self._drop_blobs([old.blob])
            return part

    def list_uploads(self, bucket_name: str) -> list[UploadRecord]:
        self.bucket(bucket_name)
        with self._lock:
            uploads = [u for u in self._uploads.values() if u.bucket == bucket_name]
        uploads.sort(key=lambda u: (u.key, u.initiated, u.upload_id))
        return uploads

    def abort(self, bucket_name: str, key: str, upload_id: str) -> None:
        with self._lock:
            upload = self.upload(bucket_name, key, upload_id)
            del self._uploads[upload_id]
            (self._uploads_dir / f"{upload_id}.json").unlink(missing_ok=True)
            self._drop_blobs(p.blob for p in upload.parts.values())

    def complete(
        self,
        bucket_name: str,
        key: str,
        upload_id: str,
        chosen: list[tuple[int, str]],
        *,
        now: float,
        forbid_overwrite: bool = False,
    ) -> ObjectRecord:
        """Assemble the listed parts (number, etag) into the object; unlisted parts are dropped."""
        bucket = self.bucket(bucket_name)
        with self._lock, bucket.lock:
            upload = self.upload(bucket_name, key, upload_id)
            if not chosen:
                raise OssError(400, "MalformedXML", "The XML you provided was not well-formed.")
            parts: list[PartRecord] = []
            previous = 0
            for number, etag in chosen:
                if number <= previous:
                    raise OssError(
                        400,
                        "InvalidPartOrder",
                        "The list of parts was not in ascending order. Parts list must be "
                        "specified in order by part number.",
                    )
                previous = number
                part = upload.parts.get(number)
                if part is None or etag.strip('"').upper() != part.etag:
                    raise OssError(
                        400,
                        "InvalidPart",
                        "One or more of the specified parts could not be found or the specified "
                        "entity tag might not have matched the part's entity tag.",
                        extra={"PartNumber": str(number), "UploadId": upload_id},
                    )
                parts.append(part)
            for part in parts[:-1]:
                if part.size < MIN_PART_SIZE:
                    raise OssError(
                        400,
                        "EntityTooSmall",
                        "Your proposed upload is smaller than the minimum allowed size.",
                        extra={"PartNumber": str(part.number), "UploadId": upload_id},
                    )
            old = bucket.objects.get(key)
            if forbid_overwrite and old is not None:
                raise OssError(409, "FileAlreadyExists", "The object you specified already exists.")
            crc = 0
            for part in parts:
                crc = crc64_combine(crc, part.crc64, part.size)
            record = ObjectRecord(
                key=key,
                size=sum(p.size for p in parts),
                etag=multipart_etag([bytes.fromhex(p.md5_hex) for p in parts]),
                crc64=crc,
                content_type=upload.content_type,
                last_modified=now,
                object_type="Multipart",
                segments=tuple(Segment(blob=p.blob, size=p.size) for p in parts if p.size),
                user_meta=upload.user_meta,
                headers=upload.headers,
            )
            self._write_record(bucket, record)
            del self._uploads[upload_id]
            (self._uploads_dir / f"{upload_id}.json").unlink(missing_ok=True)
            used = {p.blob for p in parts}
            self._drop_blobs(p.blob for p in upload.parts.values() if p.blob not in used)
            if old is not None:
                self._drop_blobs(s.blob for s in old.segments)
            # Blobs of empty parts are not segments of the object.
            self._drop_blobs(p.blob for p in parts if not p.size)
            return record
