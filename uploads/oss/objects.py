"""Objects under the server's own credentials: HeadObject (a callback's claims checked
against what OSS stores), deletes, multipart aborts (erasure), listing (reconciliation) and
download URLs."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

import oss2
from django.conf import settings

from uploads.oss.client import (
    RECONCILE_TIMEOUT_SECONDS,
    StorageUnavailable,
    _bucket,
    _describe,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # upper-case hex, without quotes
    content_type: str
    crc64: str
    request_id: str
    # When OSS stored it (Last-Modified, whole seconds): confirmations judge a ticket's deadline
    # against this, not against the time they run.
    last_modified: datetime | None = None


@dataclass(frozen=True)
class DeleteResult:
    key: str
    removed: bool  # True when OSS confirmed the delete (deleting a missing key also counts)
    error: str = ""  # why it failed, for the record; never raised on the callback path


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires_at: datetime


def oss_head_object(*, key: str, timeout: float | None = None) -> ObjectInfo | None:
    """What OSS really stores at `key` (None if nothing). Used to check a callback's claims:
    the callback body is rendered from a template the app chose, so its size may be a lie."""
    try:
        result = _bucket(timeout=timeout).head_object(key)
    except oss2.exceptions.NotFound:
        return None
    except (oss2.exceptions.OssError, oss2.exceptions.RequestError) as exc:
        raise StorageUnavailable(f"HeadObject failed: {_describe(exc)}") from exc
    return ObjectInfo(
        key=key,
        size=int(result.content_length or 0),
        etag=(result.etag or "").strip('"').upper(),
        content_type=result.headers.get("Content-Type", ""),
        crc64=str(result.server_crc or ""),
        request_id=result.request_id or "",
        last_modified=(
            datetime.fromtimestamp(result.last_modified, UTC) if result.last_modified else None
        ),
    )


def oss_delete_object(*, key: str, timeout: float | None = None) -> DeleteResult:
    """Remove an object with the server's credentials. Never raises: the callback path records
    a failure (object_removed=False) instead of missing OSS's deadline."""
    try:
        _bucket(timeout=timeout).delete_object(key)
    except (oss2.exceptions.OssError, oss2.exceptions.RequestError) as exc:
        logger.warning("Could not delete %s from OSS: %s", key, _describe(exc))
        return DeleteResult(key=key, removed=False, error=_describe(exc)[:200])
    return DeleteResult(key=key, removed=True)


def oss_browser_origins() -> list[str]:
    """The origins a browser reaches the bucket at through OSS_PUBLIC_ENDPOINT (path style, and
    virtual-hosted as <bucket>.<endpoint host>) and through IMAGE_VARIANT_ENDPOINT: what a
    page's Content-Security-Policy must let it connect to and load images from."""
    endpoint = urlsplit(settings.OSS_PUBLIC_ENDPOINT)
    scheme = endpoint.scheme or "https"
    host = endpoint.netloc or endpoint.path  # an endpoint may be given without its scheme
    origins = [f"{scheme}://{host}", f"{scheme}://{settings.OSS_BUCKET}.{host}"]
    if settings.IMAGE_VARIANT_ENDPOINT:  # thumbnails come from the CDN in front of the bucket
        cdn = urlsplit(settings.IMAGE_VARIANT_ENDPOINT)
        origins.append(f"{cdn.scheme or 'https'}://{cdn.netloc or cdn.path.rstrip('/')}")
    return origins


def oss_delete_objects(*, keys: list[str]) -> list[str]:
    """DeleteMultipleObjects (at most 1000 keys per call, OSS's limit): the keys OSS confirmed.
    Raises StorageUnavailable, for callers (erasure) that stop and continue later."""
    if not keys:
        return []
    if len(keys) > 1000:
        raise ValueError("DeleteMultipleObjects takes at most 1000 keys.")
    try:
        result = _bucket(timeout=RECONCILE_TIMEOUT_SECONDS).batch_delete_objects(keys)
    except (oss2.exceptions.OssError, oss2.exceptions.RequestError) as exc:
        raise StorageUnavailable(f"DeleteMultipleObjects failed: {_describe(exc)}") from exc
    return list(result.deleted_keys)


def oss_abort_multipart_uploads(*, prefix: str) -> int:
    """Abort every unfinished multipart upload under `prefix` (their parts are stored and billed
    but invisible to ListObjects). Returns how many were aborted."""
    aborted = 0
    try:
        bucket = _bucket(timeout=RECONCILE_TIMEOUT_SECONDS)
        for item in oss2.MultipartUploadIterator(bucket, prefix=prefix):
            # NoSuchUpload: completed or aborted meanwhile.
            with contextlib.suppress(oss2.exceptions.NoSuchUpload):
                bucket.abort_multipart_upload(item.key, item.upload_id)
            aborted += 1
    except (oss2.exceptions.OssError, oss2.exceptions.RequestError) as exc:
        raise StorageUnavailable(f"Aborting multipart uploads failed: {_describe(exc)}") from exc
    return aborted


def oss_sign_download_url(
    *, key: str, filename: str = "", expires_in: int | None = None
) -> SignedUrl:
    """A short-lived GET URL on the public endpoint; the browser saves it under `filename`."""
    seconds = expires_in if expires_in is not None else settings.DOWNLOAD_URL_TTL_SECONDS
    params = {}
    if filename:
        # RFC 6266: an ASCII fallback plus the exact UTF-8 name.
        ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_")
        params["response-content-disposition"] = (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
        )
    try:
        url = _bucket(endpoint=settings.OSS_PUBLIC_ENDPOINT).sign_url(
            "GET", key, seconds, params=params or None, slash_safe=True
        )
    except (oss2.exceptions.OssError, oss2.exceptions.ClientError, ValueError) as exc:
        raise StorageUnavailable(f"Could not sign a download URL: {_describe(exc)}") from exc
    return SignedUrl(url=url, expires_at=datetime.now(UTC) + timedelta(seconds=seconds))


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    etag: str  # upper-case hex, without quotes
    last_modified: datetime


@dataclass(frozen=True)
class ObjectPage:
    objects: tuple[ListedObject, ...]
    prefixes: tuple[str, ...]  # CommonPrefixes, with a delimiter
    next_marker: str  # where the next page starts ("" when not truncated)
    truncated: bool


def oss_list_page(
    *, prefix: str, marker: str = "", delimiter: str = "", max_keys: int = 1000
) -> ObjectPage:
    """One ListObjects (v1) page under `prefix`, in key order (UTF-8 byte order, as OSS sorts).

    The marker makes listing resumable from any key: a later page never depends on an earlier
    call's state on the server."""
    try:
        result = _bucket(timeout=RECONCILE_TIMEOUT_SECONDS).list_objects(
            prefix=prefix, delimiter=delimiter, marker=marker, max_keys=max_keys
        )
    except (oss2.exceptions.OssError, oss2.exceptions.RequestError) as exc:
        raise StorageUnavailable(f"ListObjects failed: {_describe(exc)}") from exc
    return ObjectPage(
        objects=tuple(
            ListedObject(
                key=o.key,
                size=int(o.size),
                etag=(o.etag or "").strip('"').upper(),
                last_modified=datetime.fromtimestamp(o.last_modified, UTC),
            )
            for o in result.object_list
        ),
        prefixes=tuple(result.prefix_list),
        next_marker=result.next_marker if result.is_truncated else "",
        truncated=bool(result.is_truncated),
    )
