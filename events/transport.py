"""One POST to a checked address (events/addresses.py), never following redirects.

urllib3 directly, connected to the resolved IP with the URL's host as Host header and TLS server
name (certificates are still verified against the host name), so what was checked is what is
contacted. Pools are kept per (scheme, address, port, host) for keep-alive."""

from __future__ import annotations

from dataclasses import dataclass

import certifi
import urllib3
from django.conf import settings

from events.addresses import Target

_pools: dict[tuple[str, str, int, str, str], urllib3.HTTPConnectionPool] = {}


@dataclass(frozen=True)
class Response:
    status: int | None  # None: no HTTP answer (refused address, timeout, connection error)
    error: str  # "" on a 2xx


def _pool(target: Target) -> urllib3.HTTPConnectionPool:
    key = (target.scheme, target.address, target.port, target.host, settings.EVENTS_CA_BUNDLE)
    pool = _pools.get(key)
    if pool is None:
        timeout = urllib3.Timeout(
            connect=settings.EVENTS_CONNECT_TIMEOUT_SECONDS,
            read=settings.EVENTS_READ_TIMEOUT_SECONDS,
        )
        if target.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                target.address,
                target.port,
                timeout=timeout,
                maxsize=settings.EVENTS_DELIVERY_THREADS,
                retries=False,
                cert_reqs="CERT_REQUIRED",
                ca_certs=settings.EVENTS_CA_BUNDLE or certifi.where(),
                assert_hostname=target.host,
                server_hostname=target.host,
            )
        else:
            pool = urllib3.HTTPConnectionPool(
                target.address,
                target.port,
                timeout=timeout,
                maxsize=settings.EVENTS_DELIVERY_THREADS,
                retries=False,
            )
        _pools[key] = pool
    return pool


def post(*, target: Target, body: bytes, headers: dict[str, str]) -> Response:
    """POST `body` to a checked target (events.addresses.target_resolve, once per endpoint and
    delivery round); a 2xx is success, anything else (3xx included) a failure to retry."""
    host = target.host if ":" not in target.host else f"[{target.host}]"
    default_port = 443 if target.scheme == "https" else 80
    host_header = host if target.port == default_port else f"{host}:{target.port}"
    try:
        answer = _pool(target).urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": host_header, "Content-Type": "application/json"},
            redirect=False,
            retries=False,
            preload_content=False,
        )
        # The receiver's answer is not needed: a short one is read so the connection can be
        # reused, a long one is cut off with its connection.
        answer.read(65536, decode_content=False)
        if answer.read(1, decode_content=False):
            answer.close()
        else:
            answer.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        return Response(None, f"{type(exc).__name__}: {exc}"[:255])
    if 200 <= answer.status < 300:
        return Response(answer.status, "")
    location = answer.headers.get("Location", "")
    reason = f" (redirect to {location[:100]} not followed)" if 300 <= answer.status < 400 else ""
    return Response(answer.status, f"HTTP {answer.status}{reason}"[:255])
