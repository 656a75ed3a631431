"""Small helpers for tests that talk to the live server over real HTTP."""

from __future__ import annotations

import contextlib
import http.server
import multiprocessing
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.db import connections
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
    """Authorization header with a fresh access token for the user, with the claims the app's
    own tokens carry (accounts/token_state.py), read from the user's row as it is now."""
    from accounts.models import User
    from accounts.token_state import token_claims

    token = RefreshToken.for_user(user).access_token
    current = User.objects.filter(pk=user.pk).first()  # None: the user was deleted
    for claim, value in (token_claims(current) if current else {}).items():
        token[claim] = value
    return {"Authorization": f"Bearer {token}"}


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


class TcpProxy:
    """A TCP relay on a free port of 127.0.0.1 to `upstream`, which a test can cut: `cut()`
    drops every relayed connection and closes new ones at once (as a database that went away
    does), `restore()` relays again. Stands in front of a shared service that must not stop."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.down = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self.lock:
                if self.down:
                    client.close()
                    continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                self.open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self.lock:
                self.open -= {source, sink}

    def cut(self) -> None:
        with self.lock:
            self.down = True
            relayed, self.open = self.open, set()
        for s in relayed:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        with self.lock:
            self.down = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


def allowed_across_forked_workers(attempt: Callable[[], bool], *, workers: int, tries: int):
    """(allowed, refused) when `workers` processes forked from this one each call `attempt`
    `tries` times, all starting at once: every worker with its own state and its own Redis
    connections, as gunicorn's workers have. `attempt` answers whether it was let through.

    The caller's database connections are closed first (a child must not share their sockets),
    and a child never runs atexit handlers (which would write to the caller's test database)."""
    connections.close_all()
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(workers), context.SimpleQueue()

    def worker() -> None:
        try:
            start.wait(timeout=60)
            allowed = sum(bool(attempt()) for _ in range(tries))
            results.put((allowed, tries - allowed))
        except BaseException as exc:  # shown by the assertion below
            results.put((repr(exc), 0))
        finally:
            os._exit(0)

    processes = [context.Process(target=worker) for _ in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    outcomes = [results.get() for _ in processes if not results.empty()]
    assert len(outcomes) == workers, outcomes
    assert all(isinstance(allowed, int) for allowed, _ in outcomes), outcomes
    return sum(a for a, _ in outcomes), sum(r for _, r in outcomes)
