"""The Storage class: the directory and its index, receiving bodies, buckets and objects
(multipart uploads are its MultipartUploads half, in multipart.py).

Layout and why nothing can tear: emulator/oss/storage/__init__.py.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from emulator.oss.checksums import Digest, crc64_combine
from emulator.oss.errors import OssError, no_such_bucket, no_such_key
from emulator.oss.storage.multipart import MultipartUploads
from emulator.oss.storage.records import (
    Blob,
    BucketRecord,
    ObjectRecord,
    Readable,
    Segment,
    UploadRecord,
    atomic_write_json,
    key_file,
    read_json,
)

_COPY_CHUNK = 1 << 20
# Chunks at least this big are hashed and written on the pool, in parallel with the next read.
_PARALLEL_FROM = 64 * 1024
_POOL = ThreadPoolExecutor(max_workers=6, thread_name_prefix="oss-digest")


class Storage(MultipartUploads):
    """Buckets, objects and multipart uploads under one root directory (or a temporary one)."""

    def __init__(self, root: Path | None) -> None:
        self._ephemeral = root is None
        self.root = Path(tempfile.mkdtemp(prefix="oss-emulator-")) if root is None else root
        self._tmp = self.root / "tmp"
        self._blobs = self.root / "blobs"
        self._buckets_dir = self.root / "buckets"
        self._uploads_dir = self.root / "uploads"
        for directory in (self._tmp, self._blobs, self._buckets_dir, self._uploads_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._buckets: dict[str, BucketRecord] = {}
        self._uploads: dict[str, UploadRecord] = {}
        self._lock = threading.RLock()  # the bucket table and the upload table
        self._load()

    # -- lifecycle ---------------------------------------------------------------------------

    def _load(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir()
        referenced: set[str] = set()
        for bucket_dir in sorted(self._buckets_dir.iterdir()):
            info = read_json(bucket_dir / "bucket.json")
            if info is None:
                continue
            bucket = BucketRecord(name=info["name"], created=info["created"], region=info["region"])
            for meta_path in (bucket_dir / "objects").iterdir():
                if meta_path.name.endswith(".tmp"):  # a metadata write cut short by a crash
                    meta_path.unlink(missing_ok=True)
                    continue
                data = read_json(meta_path)
                if data is None:
                    continue
                record = ObjectRecord.from_json(data)
                bucket.objects[record.key] = record
                referenced.update(s.blob for s in record.segments)
            bucket.sorted_keys = sorted(bucket.objects)
            self._buckets[bucket.name] = bucket
        for upload_path in self._uploads_dir.glob("*.json"):
            data = read_json(upload_path)
            if data is None:
                continue
            upload = UploadRecord.from_json(data)
            self._uploads[upload.upload_id] = upload
            referenced.update(p.blob for p in upload.parts.values())
        # Blobs of bodies that were being committed when the process died: nobody points at them.
        for blob in self._blobs.iterdir():
            if blob.name not in referenced:
                blob.unlink(missing_ok=True)

    def close(self) -> None:
        if self._ephemeral:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- receiving bodies --------------------------------------------------------------------

    def receive(self, stream: Readable, *, limit: int | None = None) -> Blob:
        """Stream a body into tmp/, digesting it. The caller commits or discards the blob.

        A pipeline, because hashing is what bounds upload speed: while chunk k is CRC'd, MD5'd
        and written by the pool (MD5 and file writes release the GIL, so they run on another
        core), the socket read of chunk k+1 proceeds here.
        """
        digest = Digest()
        fd, name = tempfile.mkstemp(dir=self._tmp)
        path = Path(name)
        pending: list[Future] = []
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    data = stream.read(_COPY_CHUNK)
                    for future in pending:
                        future.result()
                    pending = []
                    if not data:
                        break
                    if limit is not None and digest.size + len(data) > limit:
                        raise OssError(
                            400, "EntityTooLarge", "Your proposed upload exceeds the limit."
                        )
                    if len(data) < _PARALLEL_FROM:
                        digest.update(data)
                        out.write(data)
                        continue
                    pending = [
                        _POOL.submit(digest.update_md5, data),
                        _POOL.submit(digest.update_crc, data),
                        _POOL.submit(out.write, data),
                    ]
        except BaseException:
            for future in pending:
                future.cancel()
            wait(pending)
            path.unlink(missing_ok=True)
            raise
        return Blob(path=path, size=digest.size, md5=digest.md5, crc64=digest.crc64)

    def receive_copy(self, bucket_name: str, key: str) -> tuple[ObjectRecord, Blob]:
        """A new blob with the bytes of an existing object (CopyObject), and its record."""
        record, handles = self.get_and_open(bucket_name, key)
        try:
            return record, self.receive(_SliceReader(handles))
        finally:
            for handle, _, _ in handles:
                handle.close()

    def discard(self, blob: Blob) -> None:
        blob.path.unlink(missing_ok=True)

    def _adopt(self, blob: Blob) -> str:
        name = secrets.token_hex(16)
        os.replace(blob.path, self._blobs / name)
        return name

    def _drop_blobs(self, names: Iterable[str]) -> None:
        for name in names:
            (self._blobs / name).unlink(missing_ok=True)

    # -- buckets -------------------------------------------------------------------------

    def create_bucket(self, name: str, *, region: str, now: float) -> bool:
        """Create the bucket; False when it already exists."""
        with self._lock:
            if name in self._buckets:
                return False
            bucket_dir = self._buckets_dir / name
            (bucket_dir / "objects").mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                bucket_dir / "bucket.json", {"name": name, "created": now, "region": region}
            )
            self._buckets[name] = BucketRecord(name=name, created=now, region=region)
            return True

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket (no objects, no multipart uploads in progress)."""
        bucket = self.bucket(name)
        with self._lock, bucket.lock:
            if bucket.objects or any(u.bucket == name for u in self._uploads.values()):
                raise OssError(
                    409,
                    "BucketNotEmpty",
                    "The bucket you tried to delete is not empty.",
                    extra={"BucketName": name},
                )
            del self._buckets[name]
            shutil.rmtree(self._buckets_dir / name, ignore_errors=True)

    def bucket(self, name: str) -> BucketRecord:
        with self._lock:
            bucket = self._buckets.get(name)
        if bucket is None:
            raise no_such_bucket(name)
        return bucket

    def bucket_names(self) -> list[str]:
        with self._lock:
            return sorted(self._buckets)

    # -- objects ---------------------------------------------------------------------------

    def _write_record(self, bucket: BucketRecord, record: ObjectRecord) -> None:
        path = self._buckets_dir / bucket.name / "objects" / key_file(record.key)
        atomic_write_json(path, record.to_json())
        if record.key not in bucket.objects:
            bisect.insort(bucket.sorted_keys, record.key)
        bucket.objects[record.key] = record

    def get(self, bucket_name: str, key: str) -> ObjectRecord:
        bucket = self.bucket(bucket_name)
        with bucket.lock:
            record = bucket.objects.get(key)
        if record is None:
            raise no_such_key(key)
        return record

    def open_segments(self, record: ObjectRecord) -> list[tuple[BinaryIO, int, int]]:
        """Open every blob of a record, as (file, 0, size) slices."""
        handles: list[tuple[BinaryIO, int, int]] = []
        try:
            for segment in record.segments:
                handles.append((open(self._blobs / segment.blob, "rb"), 0, segment.size))  # noqa: SIM115
        except OSError:
            for handle, _, _ in handles:
                handle.close()
            raise
        return handles

    def get_and_open(self, bucket_name: str, key: str) -> tuple[ObjectRecord, list]:
        """The record and its open blobs, taken together so an overwrite cannot come between."""
        bucket = self.bucket(bucket_name)
        with bucket.lock:
            record = bucket.objects.get(key)
            if record is None:
                raise no_such_key(key)
            return record, self.open_segments(record)

    def put(
        self,
        bucket_name: str,
        record_template: ObjectRecord,
        blob: Blob,
        *,
        forbid_overwrite: bool = False,
    ) -> ObjectRecord:
        bucket = self.bucket(bucket_name)
        with bucket.lock:
            old = bucket.objects.get(record_template.key)
            if forbid_overwrite and old is not None:
                self.discard(blob)
                raise OssError(409, "FileAlreadyExists", "The object you specified already exists.")
            name = self._adopt(blob)
            record = replace(record_template, segments=(Segment(blob=name, size=blob.size),))
            self._write_record(bucket, record)
            if old is not None:
                self._drop_blobs(s.blob for s in old.segments)
            return record

    def append(
        self,
        bucket_name: str,
        record_template: ObjectRecord,
        blob: Blob,
        *,
        position: int,
    ) -> ObjectRecord:
        bucket = self.bucket(bucket_name)
        with bucket.lock:
            old = bucket.objects.get(record_template.key)
            if old is not None and old.object_type != "Appendable":
                self.discard(blob)
                raise OssError(
                    409,
                    "ObjectNotAppendable",
                    "The object you specified is not appendable.",
                    headers={"x-oss-next-append-position": str(old.size)},
                )
            current = old.size if old is not None else 0
            if position != current:
                self.discard(blob)
                raise OssError(
                    409,
                    "PositionNotEqualToLength",
                    "Position is not equal to file length",
                    headers={"x-oss-next-append-position": str(current)},
                )
            if old is None:
                segments: tuple[Segment, ...] = ()
                crc, base = 0, record_template
            else:
                segments, crc = old.segments, old.crc64
                # Only the first append sets the object's headers and metadata, as in OSS.
                base = replace(old, last_modified=record_template.last_modified)
            new_segments = segments
            if blob.size:
                new_segments = (*segments, Segment(blob=self._adopt(blob), size=blob.size))
            else:
                self.discard(blob)
            md5s = (old.etag if old is not None else "", blob.md5.hex())
            record = replace(
                base,
                size=current + blob.size,
                crc64=crc64_combine(crc, blob.crc64, blob.size),
                # OSS gives appendable objects an ETag that is not the MD5 of the content either.
                etag=hashlib.md5("|".join(md5s).encode()).hexdigest().upper(),  # noqa: S324
                object_type="Appendable",
                segments=new_segments,
            )
            self._write_record(bucket, record)
            return record

    def delete(self, bucket_name: str, key: str) -> bool:
        bucket = self.bucket(bucket_name)
        with bucket.lock:
            old = bucket.objects.pop(key, None)
            if old is None:
                return False
            del bucket.sorted_keys[bisect.bisect_left(bucket.sorted_keys, key)]
            path = self._buckets_dir / bucket.name / "objects" / key_file(key)
            path.unlink(missing_ok=True)
            self._drop_blobs(s.blob for s in old.segments)
            return True

    def scan(self, bucket_name: str, *, after: str, prefix: str, limit: int) -> list[ObjectRecord]:
        """Up to `limit` records in key order with key > after and key starting with prefix."""
        bucket = self.bucket(bucket_name)
        with bucket.lock:
            keys = bucket.sorted_keys
            start = max(bisect.bisect_right(keys, after), bisect.bisect_left(keys, prefix))
            found: list[ObjectRecord] = []
            for index in range(start, min(start + limit, len(keys))):
                key = keys[index]
                if not key.startswith(prefix):
                    break
                found.append(bucket.objects[key])
            return found


class _SliceReader:
    def __init__(self, handles: list[tuple[BinaryIO, int, int]]) -> None:
        self._handles = list(handles)

    def read(self, n: int = -1) -> bytes:
        while self._handles:
            data = self._handles[0][0].read(n if n > 0 else _COPY_CHUNK)
            if data:
                return data
            self._handles.pop(0)
        return b""
