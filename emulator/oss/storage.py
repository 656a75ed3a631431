"""Buckets, objects and multipart uploads, kept in a directory.

Layout under the root:
  tmp/                 bodies being received; never referenced by anything
  blobs/<hex>          immutable data files (one per PutObject, part or append)
  buckets/<name>/bucket.json
  buckets/<name>/objects/<sha256(key)>.json   an object: its metadata and its list of blobs
  uploads/<upload id>.json                     a multipart upload in progress and its parts

Why it cannot tear: a body is first streamed into tmp/ and digested; only then, under the
bucket's lock, is the blob renamed into blobs/ and the object's JSON replaced with os.replace.
An object is a list of blobs, so an append adds a blob and a completed multipart upload adopts
its parts' blobs without copying a byte. Readers open their blobs under the same lock, so an
overwrite that deletes old blobs cannot pull data from under a response being sent.

Memory mode (no data dir) uses the same code on a temporary directory removed at stop.
The index of buckets, keys and uploads lives in this process: one emulator per data dir.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Protocol

from emulator.oss.checksums import Digest, crc64_combine, multipart_etag
from emulator.oss.errors import OssError, no_such_bucket, no_such_key, no_such_upload

logger = logging.getLogger("emulator")

_COPY_CHUNK = 1 << 20
# Chunks at least this big are hashed and written on the pool, in parallel with the next read.
_PARALLEL_FROM = 64 * 1024
_POOL = ThreadPoolExecutor(max_workers=6, thread_name_prefix="oss-digest")
MIN_PART_SIZE = 100 * 1024  # OSS refuses smaller parts, except the last one
MAX_PART_NUMBER = 10000


class Readable(Protocol):
    def read(self, n: int = -1) -> bytes: ...


@dataclass(frozen=True)
class Blob:
    """A received body, digested, still in tmp/ until committed."""

    path: Path
    size: int
    md5: bytes
    crc64: int


@dataclass(frozen=True)
class Segment:
    blob: str  # file name in blobs/
    size: int


@dataclass(frozen=True)
class ObjectRecord:
    key: str
    size: int
    etag: str  # upper-case hex, unquoted; "<hex>-<n>" for multipart
    crc64: int
    content_type: str
    last_modified: float
    object_type: str  # Normal | Multipart | Appendable
    segments: tuple[Segment, ...]
    user_meta: dict[str, str] = field(default_factory=dict)  # "x-oss-meta-name" -> value
    headers: dict[str, str] = field(default_factory=dict)  # cache-control, content-disposition...

    def to_json(self) -> dict:
        data = asdict(self)
        data["segments"] = [asdict(s) for s in self.segments]
        return data

    @classmethod
    def from_json(cls, data: dict) -> ObjectRecord:
        data = dict(data)
        data["segments"] = tuple(Segment(**s) for s in data["segments"])
        return cls(**data)


@dataclass(frozen=True)
class PartRecord:
    number: int
    blob: str
    size: int
    etag: str
    md5_hex: str
    crc64: int
    last_modified: float


@dataclass
class UploadRecord:
    upload_id: str
    bucket: str
    key: str
    initiated: float
    content_type: str
    user_meta: dict[str, str]
    headers: dict[str, str]
    parts: dict[int, PartRecord] = field(default_factory=dict)

    def to_json(self) -> dict:
        data = asdict(self)
        data["parts"] = [asdict(p) for p in self.parts.values()]
        return data

    @classmethod
    def from_json(cls, data: dict) -> UploadRecord:
        data = dict(data)
        data["parts"] = {p["number"]: PartRecord(**p) for p in data["parts"]}
        return cls(**data)


@dataclass
class BucketRecord:
    name: str
    created: float
    region: str
    objects: dict[str, ObjectRecord] = field(default_factory=dict)
    sorted_keys: list[str] = field(default_factory=list)  # the keys of `objects`, in order
    lock: threading.RLock = field(default_factory=threading.RLock)


def _atomic_write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    """A metadata file, or None (with a warning) when it is missing or unreadable: one damaged
    file must not keep the emulator from starting."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable emulator metadata %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _key_file(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest() + ".json"


class Storage:
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
            info = _read_json(bucket_dir / "bucket.json")
            if info is None:
                continue
            bucket = BucketRecord(name=info["name"], created=info["created"], region=info["region"])
            for meta_path in (bucket_dir / "objects").iterdir():
                if meta_path.name.endswith(".tmp"):  # a metadata write cut short by a crash
                    meta_path.unlink(missing_ok=True)
                    continue
                data = _read_json(meta_path)
                if data is None:
                    continue
                record = ObjectRecord.from_json(data)
                bucket.objects[record.key] = record
                referenced.update(s.blob for s in record.segments)
            bucket.sorted_keys = sorted(bucket.objects)
            self._buckets[bucket.name] = bucket
        for upload_path in self._uploads_dir.glob("*.json"):
            data = _read_json(upload_path)
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
            _atomic_write_json(
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
        path = self._buckets_dir / bucket.name / "objects" / _key_file(record.key)
        _atomic_write_json(path, record.to_json())
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
            path = self._buckets_dir / bucket.name / "objects" / _key_file(key)
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

    # -- multipart ---------------------------------------------------------------------------

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
            _atomic_write_json(self._uploads_dir / f"{upload.upload_id}.json", upload.to_json())
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
            _atomic_write_json(self._uploads_dir / f"{upload_id}.json", upload.to_json())
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
