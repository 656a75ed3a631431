"""Small helpers for tests that talk to the live server over real HTTP."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from rest_framework_simplejwt.tokens import RefreshToken


def cache_clear() -> None:
    """Empty this test process's cache: in Redis only the keys under its own prefix.

    Django's RedisCache.clear() flushes the whole Redis database, which would wipe the throttle
    counters and credentials of the tests other xdist workers are running at that moment.
    """
    if not hasattr(cache, "incr_window"):  # the local-memory cache is this process's own
        cache.clear()
        return
    client = cache._cache.get_client(write=True)
    stale = list(client.scan_iter(match=f"{cache.key_prefix}:*", count=1000))
    if stale:
        client.delete(*stale)


def bearer(user) -> dict[str, str]:
    """Authorization header with a fresh access token for the user."""
    return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}


# Every field of the credentials response (the SDKs' five plus what phones need for refreshes).
CREDENTIALS_FIELDS = frozenset(
    {
        "StatusCode",
        "AccessKeyId",
        "AccessKeySecret",
        "SecurityToken",
        "Expiration",
        "Bucket",
        "Region",
        "Endpoint",
        "Prefix",
        "Scope",
        "RefreshAfter",
        "ServerTime",
    }
)


def in_a_new_thread(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run fn in a thread of its own ({"result": ...} or {"error": ...}): the server's OSS
    clients, and their connections, are built per thread."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fn()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return outcome


class LocalServer:
    """A ThreadingHTTPServer for `handler` on a free port of 127.0.0.1, serving in a thread."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler], *, tls=None) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
