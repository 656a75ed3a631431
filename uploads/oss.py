"""The server's own OSS operations (the only module that imports oss2).

Assumes on the cloud side: the server's RAM user (ALIBABA_ACCESS_KEY_ID/SECRET) may HeadObject,
GetObject (to sign download URLs), DeleteObject (also through DeleteMultipleObjects), ListObjects,
ListMultipartUploads and AbortMultipartUpload (account erasure) on OSS_BUCKET. Apps never get
these credentials; they upload with STS credentials scoped to their own prefix, or with upload
URLs and forms the server signs with those same per-user STS credentials (`Signer`), so the
RAM user itself never needs oss:PutObject.

Every call reads the settings when made, has a bounded timeout (the upload callback must answer
within OSS's 5-second budget and calls this module on its way), and turns SDK errors into
`StorageUnavailable` or a plain result (`None` / `False`) where absence is an answer.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from urllib.parse import quote, urlsplit

import certifi
import oss2
import requests
from django.conf import settings
from requests.structures import CaseInsensitiveDict

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


_local = threading.local()


class _HeadResponse:
    """What oss2.http.Response reads from a `requests` response, for a bodyless answer."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status_code = response.status
        self.headers = CaseInsensitiveDict(response.getheaders())
        self._body = response.read()  # empty for HEAD; drained so the connection is reusable

    def iter_content(self, chunk_size: int):
        for start in range(0, len(self._body), chunk_size):
            yield self._body[start : start + chunk_size]


@cache
def _tls_context() -> ssl.SSLContext:
    # The CA bundle `requests` itself verifies OSS against (trust_env is off, see _bucket).
    return ssl.create_default_context(cafile=certifi.where())


class _Session(oss2.Session):
    """oss2's transport, with HeadObject sent on a kept-alive http.client connection.

    Every accepted callback makes one HeadObject, and `requests` (settings merge, URL
    re-parsing, hooks, urllib3's pool) cost more CPU than everything else in it. oss2 still
    builds and signs the request and maps the answer to its results and errors; only the bytes
    on the wire go another way. Anything else (bodies, query parameters, a proxy) goes through
    `requests` as before. One per thread, like the client that owns it."""

    def __init__(self) -> None:
        super().__init__()
        self._connection: http.client.HTTPConnection | None = None
        self._origin: tuple[str, str, float] | None = None

    def do_request(self, req, timeout):
        url = urlsplit(req.url)
        if req.method != "HEAD" or req.params or url.query or req.data or req.proxies:
            return super().do_request(req, timeout)
        path = url.path or "/"
        headers = {name: value for name, value in req.headers.items() if value is not None}
        origin = (url.scheme, url.netloc, timeout)
        for attempt in (1, 2):
            reused = self._connection is not None and self._origin == origin
            if not reused:
                self._close()
                if url.scheme == "https":
                    connection = http.client.HTTPSConnection(
                        url.netloc, timeout=timeout, context=_tls_context()
                    )
                else:
                    connection = http.client.HTTPConnection(url.netloc, timeout=timeout)
                self._connection, self._origin = connection, origin
            try:
                self._connection.request("HEAD", path, headers=headers)
                response = _HeadResponse(self._connection.getresponse())
            except (OSError, http.client.HTTPException) as exc:
                self._close()
                # A kept-alive connection the server has since closed fails on first use;
                # HEAD is idempotent, so one retry on a new connection is safe.
                if reused and attempt == 1:
                    continue
                raise oss2.exceptions.RequestError(exc) from exc
            return oss2.http.Response(response)
        raise AssertionError("unreachable")

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = self._origin = None


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
        session = _Session()
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
    if isinstance(exc, oss2.exceptions.RequestError):  # status -2: no HTTP answer at all
        return f"no answer from OSS ({type(exc.exception).__name__})"
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


# --- Image variants ------------------------------------------------------------------------------
# OSS IMG (x-oss-process=image/... or style/<name>) derives images on GET; the bucket needs IMG
# enabled and, for style/ variants, the styles defined. Media types IMG decodes as a source:
IMG_SOURCE_TYPES = frozenset(
    [
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/bmp",
        "image/tiff",
        "image/heic",
    ]
)


@dataclass(frozen=True)
class ProcessUrls:
    urls: dict[str, str]  # variant name -> presigned GET with x-oss-process
    expires_at: datetime


def oss_sign_process_urls(
    *, keys: list[str], processes: dict[str, str], expires_in: int | None = None
) -> dict[str, ProcessUrls]:
    """Presigned GET URLs of derived images, `processes[name]` applied to each key.

    The same URLs oss2's `sign_url(..., params={"x-oss-process": ...})` makes (V1 or V4 per
    OSS_SIGNATURE_VERSION; the process is signed, so a client cannot change it), computed here
    with what the URLs of a page share (credential, scope, signing key, quoted processes)
    worked out once: through oss2, signing a page of 50 uploads with two variants cost more
    than serving the page."""
    if not keys or not processes:
        return {}
    seconds = expires_in if expires_in is not None else settings.IMAGE_VARIANT_URL_TTL_SECONDS
    try:
        client = _bucket(endpoint=settings.OSS_PUBLIC_ENDPOINT)
        prefix = client._make_url(client.bucket_name, "", slash_safe=True)
    except (oss2.exceptions.ClientError, ValueError) as exc:
        raise StorageUnavailable(f"Could not sign image URLs: {_describe(exc)}") from exc
    if settings.IMAGE_VARIANT_ENDPOINT:
        # A CDN (or bucket CNAME) serving the bucket at its root: OSS signs /bucket/key
        # whatever host the URL names, so the same signature holds behind it.
        prefix = settings.IMAGE_VARIANT_ENDPOINT.rstrip("/") + "/"
    now = datetime.now(UTC).replace(microsecond=0)
    quoted = [(name, process, quote(process, safe="")) for name, process in processes.items()]
    if settings.OSS_SIGNATURE_VERSION == "v4":
        sign = _v4_url_signer(client.bucket_name, prefix, now, seconds, quoted)
    else:
        sign = _v1_url_signer(client.bucket_name, prefix, int(now.timestamp()) + seconds, quoted)
    expires_at = now + timedelta(seconds=seconds)
    return {key: ProcessUrls(urls=sign(key), expires_at=expires_at) for key in keys}


def _v1_url_signer(bucket: str, prefix: str, expires: int, processes: list[tuple[str, str, str]]):
    secret = settings.ALIBABA_ACCESS_KEY_SECRET.encode()
    access_key_id = quote(settings.ALIBABA_ACCESS_KEY_ID, safe="")
    tail = f"&OSSAccessKeyId={access_key_id}&Expires={expires}&Signature="
    head = f"GET\n\n\n{expires}\n/{bucket}/"

    def sign(key: str) -> dict[str, str]:
        path = prefix + quote(key, safe="/")
        urls = {}
        for name, process, quoted_process in processes:
            to_sign = f"{head}{key}?x-oss-process={process}".encode()
            signature = base64.b64encode(hmac.digest(secret, to_sign, "sha1")).decode()
            urls[name] = f"{path}?x-oss-process={quoted_process}{tail}{quote(signature, safe='')}"
        return urls

    return sign


def _v4_url_signer(
    bucket: str, prefix: str, now: datetime, seconds: int, processes: list[tuple[str, str, str]]
):
    date_time = now.strftime("%Y%m%dT%H%M%SZ")
    region = settings.OSS_REGION
    scope = f"{date_time[:8]}/{region}/oss/aliyun_v4_request"
    credential = quote(f"{settings.ALIBABA_ACCESS_KEY_ID}/{scope}", safe="")
    signing_key = _v4_signing_key(settings.ALIBABA_ACCESS_KEY_SECRET, date_time[:8], region)
    # The canonical query (sorted) and the URL's own order, as oss2 writes it.
    before = f"x-oss-credential={credential}&x-oss-date={date_time}&x-oss-expires={seconds}"
    after = "&x-oss-signature-version=OSS4-HMAC-SHA256\n\n\nUNSIGNED-PAYLOAD"
    url_params = (
        f"&x-oss-date={date_time}&x-oss-expires={seconds}"
        f"&x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-credential={credential}"
        "&x-oss-signature="
    )
    string_head = f"OSS4-HMAC-SHA256\n{date_time}\n{scope}\n"

    def sign(key: str) -> dict[str, str]:
        quoted_key = quote(key, safe="/")
        canonical_head = f"GET\n/{bucket}/{quoted_key}\n{before}&x-oss-process="
        path = prefix + quoted_key + "?x-oss-process="
        urls = {}
        for name, _, quoted_process in processes:
            canonical = f"{canonical_head}{quoted_process}{after}".encode()
            to_sign = (string_head + hashlib.sha256(canonical).hexdigest()).encode()
            signature = hmac.digest(signing_key, to_sign, "sha256").hex()
            urls[name] = f"{path}{quoted_process}{url_params}{signature}"
        return urls

    return sign


@lru_cache(maxsize=8)
def _v4_signing_key(secret: str, date: str, region: str) -> bytes:
    key = hmac.new(f"aliyun_v4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, "oss", "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


# --- Upload URLs and forms (uploads.signing) ----------------------------------------------------
V4_ALGORITHM = "OSS4-HMAC-SHA256"


@dataclass(frozen=True)
class Signer:
    """Credentials that sign an upload on a user's behalf: that user's STS credentials, so OSS
    itself confines what is signed to the user's prefix."""

    access_key_id: str
    access_key_secret: str
    security_token: str

    def __repr__(self) -> str:  # never print the secret or the token by accident
        return f"Signer(access_key_id={self.access_key_id!r})"


def _signing_bucket(signer: Signer) -> oss2.Bucket:
    auth_version = "v4" if settings.OSS_SIGNATURE_VERSION == "v4" else "v1"
    auth = oss2.StsAuth(
        signer.access_key_id, signer.access_key_secret, signer.security_token, auth_version
    )
    return oss2.Bucket(
        auth,
        settings.OSS_PUBLIC_ENDPOINT,
        settings.OSS_BUCKET,
        region=settings.OSS_REGION,
        is_path_style=settings.OSS_PATH_STYLE,
    )


def oss_presign_put(*, signer: Signer, key: str, headers: dict[str, str], expires_in: int) -> str:
    """A PUT URL for `key` on the public endpoint whose signature covers `headers`: V1 presigned
    URLs sign Content-Type, Content-MD5 and every x-oss-* header the request carries, V4 ones
    the same (plus any additional headers it lists), so OSS refuses the upload if one of them is
    missing, added or changed."""
    try:
        return _signing_bucket(signer).sign_url(
            "PUT", key, expires_in, headers=dict(headers), slash_safe=True
        )
    except (oss2.exceptions.OssError, oss2.exceptions.ClientError, ValueError) as exc:
        raise StorageUnavailable(f"Could not sign an upload URL: {_describe(exc)}") from exc


def oss_bucket_url() -> str:
    """Where forms are posted (PostObject): the bucket on the public endpoint, addressed the way
    the SDKs address it (path style for an IP or localhost, else `<bucket>.<host>`)."""
    client = oss2.Bucket(
        oss2.AnonymousAuth(),
        settings.OSS_PUBLIC_ENDPOINT,
        settings.OSS_BUCKET,
        is_path_style=settings.OSS_PATH_STYLE,
    )
    return client._make_url(settings.OSS_BUCKET, "")


def oss_post_signer_fields(*, signer: Signer, now: datetime) -> dict[str, str]:
    """The form fields that name the signer. The policy must fix each of them too: OSS requires
    it of the V4 fields, and a fixed token stops a form from being replayed with another."""
    fields = {"x-oss-security-token": signer.security_token} if signer.security_token else {}
    if settings.OSS_SIGNATURE_VERSION != "v4":
        return {"OSSAccessKeyId": signer.access_key_id, **fields}
    date_time = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{date_time[:8]}/{settings.OSS_REGION}/oss/aliyun_v4_request"
    return {
        "x-oss-signature-version": V4_ALGORITHM,
        "x-oss-credential": f"{signer.access_key_id}/{scope}",
        "x-oss-date": date_time,
        **fields,
    }


def oss_sign_post_policy(
    *, signer: Signer, policy: dict, signer_fields: dict[str, str]
) -> dict[str, str]:
    """The `policy` field (base64 JSON) and its signature field for a PostObject form.

    V1: base64(HMAC-SHA1(secret, policy)) in `Signature`. V4: hex HMAC-SHA256 of the policy with
    the day's signing key (the HMAC chain of date, region, "oss", "aliyun_v4_request" from
    "aliyun_v4" + secret) in `x-oss-signature`. oss2 has no PostObject signer."""
    encoded = base64.b64encode(json.dumps(policy, separators=(",", ":")).encode()).decode()
    if "x-oss-credential" not in signer_fields:
        digest = hmac.new(signer.access_key_secret.encode(), encoded.encode(), hashlib.sha1)
        return {"policy": encoded, "Signature": base64.b64encode(digest.digest()).decode()}
    date, region = signer_fields["x-oss-credential"].split("/")[1:3]
    key = _v4_signing_key(signer.access_key_secret, date, region)
    signature = hmac.new(key, encoded.encode(), hashlib.sha256).hexdigest()
    return {"policy": encoded, "x-oss-signature": signature}


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
