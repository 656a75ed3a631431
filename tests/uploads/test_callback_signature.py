"""The pinned Alibaba key against the example callback in OSS's own documentation.

The OSS "Callback" API reference signs path ``/index.php``, query ``id=1&index=2`` and body
``bucket=yonghu-test``; its ``x-oss-pub-key-url`` names
http://gosspublic.alicdn.com/callback_pub_key_v1.pem. The project never fetches that URL: the key
ships in uploads/keys/ and must verify the documented signature."""

from __future__ import annotations

import base64

import pytest

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
