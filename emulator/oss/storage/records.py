"""What the storage keeps (buckets, objects, multipart uploads and their parts, received
bodies) and how its metadata files are written whole or not at all, and read back."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

logger = logging.getLogger("emulator")


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


def atomic_write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
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


def key_file(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest() + ".json"
