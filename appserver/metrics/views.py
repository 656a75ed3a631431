"""GET /metrics: the Prometheus text format, for scrapers the operator named.

Who may read it (docs/metrics.md):

- ``METRICS_TOKEN`` set: the request must carry ``Authorization: Bearer <token>`` (compared in
  constant time; 401 otherwise).
- ``METRICS_ALLOWED_IPS`` set: the connecting address (REMOTE_ADDR, never a forwarded header)
  must be in one of the networks, and the request must not have come through a proxy (it
  carries no X-Forwarded-For or Forwarded header): a public load balancer on an allowed
  address must not hand the page to the internet (403 otherwise).
- Both set: both hold. Neither set: 404, the page does not exist (the production default; the
  local default allows loopback only).

Under gunicorn (PROMETHEUS_MULTIPROC_DIR set) the worker that answers adds up the values of
every worker, live or exited, from the shared directory; otherwise it reports its own process.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, generate_latest
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from appserver.errors import AppError, MethodNotAllowed, NotAuthenticated, NotFound, error_response
from appserver.errors import PermissionDenied as Forbidden
from appserver.metrics.shared import SharedCollector

_PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED")


class _Scrape:
    """What one scrape reports: every worker's metrics (or this process's), then the shared
    and scrape-time ones. `generate_latest` only needs `collect()`."""

    def __init__(self) -> None:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        # registry=None: read the directory at each collect() without registering anywhere.
        self._workers = MultiProcessCollector(None, path=directory) if directory else REGISTRY
        self._shared = SharedCollector()

    def collect(self) -> Iterator[Metric]:
        yield from self._workers.collect()
        yield from self._shared.collect()


_scrape: _Scrape | None = None


def _refusal(request: HttpRequest) -> AppError | None:
    token: str = settings.METRICS_TOKEN
    networks = settings.METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        return NotFound()  # not enabled: as if there were no such page
    if networks:
        try:
            peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            peer = None
        if peer is not None and peer.version == 6 and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped  # a dual-stack socket's form of an IPv4 peer
        proxied = any(request.META.get(header) for header in _PROXY_HEADERS)
        if peer is None or proxied or not any(peer in network for network in networks):
            return Forbidden("This address may not read the metrics.", code="metrics_forbidden")
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # compare_digest: the time taken does not depend on how much of the token matched.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return NotAuthenticated("Send the metrics token as a Bearer token.")
    return None


def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition format 0.0.4, which every Prometheus version reads."""
    global _scrape
    if request.method not in ("GET", "HEAD"):
        response = error_response(MethodNotAllowed(f'Method "{request.method}" not allowed.'))
        response["Allow"] = "GET, HEAD"
        return response
    refusal = _refusal(request)
    if refusal is not None:
        response = error_response(refusal)
        if isinstance(refusal, NotAuthenticated):
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if _scrape is None:
        _scrape = _Scrape()
    response = HttpResponse(generate_latest(_scrape), content_type=CONTENT_TYPE_PLAIN_0_0_4)
    response["Cache-Control"] = "no-store"
    return response
