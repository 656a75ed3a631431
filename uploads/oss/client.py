"""The oss2 client the server's own OSS calls share: one per thread and configuration, with
HeadObject on a kept-alive connection (it is on every accepted callback), and the error type
every call turns SDK errors into."""

from __future__ import annotations

import http.client
import ssl
import threading
from functools import cache
from urllib.parse import urlsplit

import certifi
import oss2
import requests
from django.conf import settings
from requests.structures import CaseInsensitiveDict

from appserver.errors import ServiceUnavailable

# Listing and batch work (`manage.py reconcile`, account erasure) runs offline, not on the
# callback path, so its calls get a longer bound than OSS_TIMEOUT_SECONDS.
RECONCILE_TIMEOUT_SECONDS = 30.0


class StorageUnavailable(ServiceUnavailable):
    code, message = "storage_unavailable", "The storage service is unavailable. Retry later."


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
