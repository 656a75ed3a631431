"""Presigned URLs sign headers as OSS does: V1 signs Content-MD5, Content-Type and every x-oss-*
header the request carries; V4 signs the same plus the additional headers it lists. A request
that drops, adds or changes one of them is SignatureDoesNotMatch, and nothing is stored."""

from __future__ import annotations

import oss2
import pytest
import requests

from tests.emulator.conftest import BUCKET, REGION

KEY = "users/alice/signed.txt"
HEADERS = {
    "Content-Type": "text/plain",
    "x-oss-meta-album": "trip",
    "x-oss-forbid-overwrite": "true",
}


def _put(url: str, headers: dict[str, str]) -> requests.Response:
    return requests.put(url, data=b"signed bytes", headers=headers, timeout=10)


def test_the_signed_headers_as_sent_work(alice, root_bucket, auth_version):
    url = alice.sign_url("PUT", KEY, 60, headers=dict(HEADERS))
    response = _put(url, HEADERS)
    assert response.status_code == 200, response.text
    stored = root_bucket.get_object(KEY)
    assert stored.read() == b"signed bytes"
    assert stored.content_type == "text/plain"
    assert stored.headers["x-oss-meta-album"] == "trip"


@pytest.mark.parametrize(
    "change",
    [
        {"Content-Type": "text/html"},
        {"x-oss-meta-album": "work"},
        {"x-oss-meta-album": None},
        {"x-oss-forbid-overwrite": None},
        {"x-oss-object-acl": "public-read"},
        {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
    ],
    ids=["type", "changed", "dropped", "dropped-forbid", "added-acl", "added-md5"],
)
def test_any_change_is_a_signature_mismatch(alice, root_bucket, auth_version, change):
    url = alice.sign_url("PUT", KEY, 60, headers=dict(HEADERS))
    headers = {**HEADERS, **{k: v for k, v in change.items() if v is not None}}
    for name in (k for k, v in change.items() if v is None):
        headers.pop(name)
    response = _put(url, headers)
    assert response.status_code == 403, response.text
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text
    assert root_bucket.object_exists(KEY) is False


def test_v4_additional_headers_are_signed_too(emu, alice_creds, root_bucket):
    # oss2's StsAuth does not pass additional headers on; its V4 provider auth does.
    provider = oss2.credentials.StaticCredentialsProvider(
        alice_creds.access_key_id, alice_creds.access_key_secret, alice_creds.security_token
    )
    alice = oss2.Bucket(oss2.ProviderAuthV4(provider), emu.endpoint, BUCKET, region=REGION)
    headers = {**HEADERS, "Content-Disposition": "attachment"}
    url = alice.sign_url(
        "PUT", KEY, 60, headers=dict(headers), additional_headers=["content-disposition"]
    )
    assert "x-oss-additional-headers=content-disposition" in url
    changed = _put(url, {**headers, "Content-Disposition": "inline"})
    assert changed.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in changed.text
    assert root_bucket.object_exists(KEY) is False
    assert _put(url, headers).status_code == 200
