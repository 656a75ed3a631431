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

Where: store.py is the Storage class (the directory, receiving bodies, buckets, objects);
multipart.py its multipart uploads; records.py what is stored and how its JSON is written.
"""

from emulator.oss.storage.multipart import MAX_PART_NUMBER, MIN_PART_SIZE
from emulator.oss.storage.records import (
    Blob,
    BucketRecord,
    ObjectRecord,
    PartRecord,
    Readable,
    Segment,
    UploadRecord,
)
from emulator.oss.storage.store import Storage

__all__ = [
    "MAX_PART_NUMBER",
    "MIN_PART_SIZE",
    "Blob",
    "BucketRecord",
    "ObjectRecord",
    "PartRecord",
    "Readable",
    "Segment",
    "Storage",
    "UploadRecord",
]
