"""The server's own OSS operations (the only module that imports oss2).

Assumes on the cloud side: the server's RAM user (ALIBABA_ACCESS_KEY_ID/SECRET) may HeadObject,
GetObject (to sign download URLs), DeleteObject and ListObjects on OSS_BUCKET. Apps never get
these credentials; they upload with STS credentials scoped to their own prefix.

Every call reads the settings when made, has a bounded timeout (the upload callback must answer
within OSS's 5-second budget and calls this module on its way), and turns SDK errors into
`StorageUnavailable` or a plain result (`None` / `False`) where absence is an answer.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import oss2
import requests
from django.conf import settings

from appserver.errors import ServiceUnavailable

logger = logging.getLogger(__name__)


class StorageUnavailable(ServiceUnavailable):
    code, message = "storage_unavailable", "The storage service is unavailable. Retry later."


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # upper-case hex, without quotes
    content_type: str
    crc64: str
    request_id: str


@dataclass(frozen=True)
class DeleteResult:
    key: str
    removed: bool  # True when OSS confirmed the delete (deleting a missing key also counts)
    error: str = ""  # why it failed, for the record; never raised on the callback path


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires_at: datetime


_local = threading.local()


def _bucket(*, endpoint: str | None = None, timeout: float | None = None) -> oss2.Bucket:
    """An oss2 client for the current settings, reused per thread: building one (and its HTTP
    session) costs more than a HeadObject, and a kept-alive connection saves a handshake."""
    auth_version = "v4" if settings.OSS_SIGNATURE_VERSION == "v4" else "v1"
    config = (
        auth_version,
        settings.ALIBABA_ACCESS_KEY_ID,
        settings.ALIBABA_ACCESS_KEY_SECRET,
        endpoint or settings.OSS_ENDPOINT,
        settings.OSS_BUCKET,
        timeout if timeout is not None else settings.OSS_TIMEOUT_SECONDS,
        settings.OSS_REGION,
        settings.OSS_PATH_STYLE,
    )
    clients = getattr(_local, "clients", None)
    if clients is None:
        clients = _local.clients = {}
    client = clients.get(config)
    if client is None:
        auth = oss2.make_auth(config[1], config[2], auth_version)
        session = oss2.Session()
        # requests re-reads the proxy variables (and ~/.netrc) from the environment on every
        # request unless told not to: more than a third of a HeadObject's CPU. They are read
        # once here instead, so HTTP(S)_PROXY / NO_PROXY still apply.
        session.session.trust_env = False
        client = oss2.Bucket(
            auth,
            config[3],
            config[4],
            connect_timeout=config[5],
            region=config[6],
            is_path_style=config[7],
            enable_crc=False,
            session=session,
            proxies=requests.utils.get_environ_proxies(config[3]) or None,
        )
        if len(clients) > 8:  # settings changed (tests): forget old configurations
            clients.clear()
        clients[config] = client
    return client


def _describe(exc: Exception) -> str:
    if isinstance(exc, oss2.exceptions.OssError):
        return f"{exc.status} {exc.code or ''} {exc.request_id or ''}".strip()
    return type(exc).__name__


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


# --- Reconciliation (reports app) ---------------------------------------------------------------
# Listing for `manage.py reconcile` (reports/reconciliation.py). It runs offline, not on the
# callback path, so its calls get a longer bound than OSS_TIMEOUT_SECONDS.
RECONCILE_TIMEOUT_SECONDS = 30.0


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
