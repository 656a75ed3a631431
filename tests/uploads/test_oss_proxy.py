"""The server's OSS client reads the proxy variables once, when it is built (uploads/oss/client.py):
HTTP_PROXY still routes its requests, NO_PROXY still exempts hosts."""

from __future__ import annotations

import http.server

import pytest

from tests.helpers import LocalServer, in_a_new_thread
from uploads import oss


class _Proxy:
    """A forward proxy that records request lines and answers 502."""

    def __init__(self) -> None:
        lines = self.lines = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                lines.append(self.requestline)
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET = _any

            def log_message(self, *args) -> None:
                pass

        self.local = LocalServer(Handler)
        self.url = self.local.url

    def close(self) -> None:
        self.local.close()


@pytest.fixture
def proxy():
    server = _Proxy()
    yield server
    server.close()


def _head_in_a_new_thread(key: str):
    return in_a_new_thread(lambda: oss.oss_head_object(key=key))


def test_http_proxy_routes_the_servers_requests(alibaba, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    outcome = _head_in_a_new_thread("users/x/proxied.txt")
    assert isinstance(outcome.get("error"), oss.StorageUnavailable)
    assert len(proxy.lines) == 1
    assert proxy.lines[0].startswith(f"HEAD {alibaba.endpoint}/")


def test_no_proxy_exempts_the_endpoint(alibaba, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    outcome = _head_in_a_new_thread("users/x/not-there.txt")
    assert outcome == {"result": None}  # the emulator itself answered: no such object
    assert proxy.lines == []
