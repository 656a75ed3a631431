"""The pinned Alibaba key against the example callback in OSS's own documentation.

The OSS "Callback" API reference signs path ``/index.php``, query ``id=1&index=2`` and body
``bucket=yonghu-test``; its ``x-oss-pub-key-url`` names
http://gosspublic.alicdn.com/callback_pub_key_v1.pem. The project never fetches that URL: the key
ships in uploads/keys/ and must verify the documented signature. Keys at other allowed URLs (the
emulator's) are fetched, cached, and read again when they change."""

from __future__ import annotations

import base64
import http.server
import uuid

import pytest

from emulator.callbacks import CallbackSigner
from tests.helpers import LocalServer
from uploads.callback_signature import (
    CallbackKeyRefused,
    CallbackSignatureInvalid,
    callback_verify,
)

DOC_AUTHORIZATION = (
    "kKQeGTRccDKyHB3H9vF+xYMSrmhMZjzzl2/kdD1ktNVgbWEfYTQG0G2SU/RaHBovRCE8OkQDjC3uG33esH2txA=="
)
DOC_KEY_URL = "aHR0cDovL2dvc3NwdWJsaWMuYWxpY2RuLmNvbS9jYWxsYmFja19wdWJfa2V5X3YxLnBlbQ=="


@pytest.fixture
def production_prefixes(settings):
    settings.OSS_CALLBACK_KEY_URL_PREFIXES = [
        "https://gosspublic.alicdn.com/",
        "http://gosspublic.alicdn.com/",
    ]
    # Any attempt to fetch would fail here: there is no network in tests.
    settings.OSS_CALLBACK_KEY_FETCH_TIMEOUT_SECONDS = 0.01


def _verify(**overrides) -> None:
    values = {
        "authorization": DOC_AUTHORIZATION,
        "pub_key_url_b64": DOC_KEY_URL,
        "path": "/index.php",
        "query_string": "id=1&index=2",
        "body": b"bucket=yonghu-test",
    }
    callback_verify(**{**values, **overrides})


def test_documented_key_url_decodes_to_alibabas_key():
    assert base64.b64decode(DOC_KEY_URL) == b"http://gosspublic.alicdn.com/callback_pub_key_v1.pem"


def test_pinned_key_verifies_the_documented_example(production_prefixes):
    _verify()  # raises if not


@pytest.mark.parametrize(
    "change",
    [
        {"body": b"bucket=yonghu-test2"},
        {"path": "/index.html"},
        {"query_string": "id=1&index=3"},
        {"query_string": ""},
        {"authorization": base64.b64encode(b"\x00" * 64).decode()},
        {"authorization": "not base64!"},
    ],
)
def test_any_change_breaks_the_documented_signature(production_prefixes, change):
    with pytest.raises(CallbackSignatureInvalid):
        _verify(**change)


def test_alibabas_url_is_refused_where_not_allowed(settings):
    settings.OSS_CALLBACK_KEY_URL_PREFIXES = ["http://127.0.0.1:9100/_emulator/"]
    with pytest.raises(CallbackKeyRefused):
        _verify()


def test_lookalike_host_is_refused(production_prefixes):
    url = base64.b64encode(b"http://gosspublic.alicdn.com.evil.example/k.pem").decode()
    with pytest.raises(CallbackKeyRefused):
        _verify(pub_key_url_b64=url)


class _KeyServer:
    """Serves one PEM at an allowed URL, like the emulator's key endpoint; counts requests."""

    def __init__(self, pem: bytes) -> None:
        self.pem, self.hits = pem, 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.pem)))
                self.end_headers()
                self.wfile.write(server.pem)

            def log_message(self, *args) -> None:
                pass

        self.local = LocalServer(Handler)
        # A new path per server: fetched keys are cached per URL, in-process and in Redis.
        self.prefix = f"{self.local.url}/keys/"
        self.url = f"{self.prefix}{uuid.uuid4().hex}.pem"

    def close(self) -> None:
        self.local.close()


@pytest.fixture
def key_server(settings):
    first = CallbackSigner(None)
    server = _KeyServer(first.public_key_pem)
    settings.OSS_CALLBACK_KEY_URL_PREFIXES = [server.prefix]
    yield server, first
    server.close()


def _signed_by(signer: CallbackSigner, url: str, body: bytes = b"bucket=b") -> None:
    callback_verify(
        authorization=base64.b64encode(signer.sign(b"/cb\n" + body)).decode(),
        pub_key_url_b64=base64.b64encode(url.encode()).decode(),
        path="/cb",
        query_string="",
        body=body,
    )


def test_a_key_replaced_at_its_url_is_read_again(key_server):
    server, first = key_server
    _signed_by(first, server.url)
    assert server.hits == 1
    _signed_by(first, server.url)
    assert server.hits == 1  # cached
    second = CallbackSigner(None)  # the emulator started afresh, with a new key
    server.pem = second.public_key_pem
    _signed_by(second, server.url)  # accepted: the URL was read again
    _signed_by(second, server.url)
    assert server.hits == 2
    with pytest.raises(CallbackSignatureInvalid):
        _signed_by(first, server.url)  # the old key no longer counts
    assert server.hits == 2  # and did not make the server fetch again within the window


def test_forgeries_make_at_most_one_fetch_per_window(key_server):
    server, first = key_server
    _signed_by(first, server.url)
    forger = CallbackSigner(None)
    for _ in range(5):
        with pytest.raises(CallbackSignatureInvalid):
            _signed_by(forger, server.url)
    assert server.hits == 2  # the first fetch, then one check of the URL for all five
    _signed_by(first, server.url)  # the genuine key still verifies
    assert server.hits == 2
