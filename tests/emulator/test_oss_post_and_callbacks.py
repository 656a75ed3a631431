"""PostObject (browser form upload with a signed policy, V1 and V4 form fields) and the upload
callbacks OSS sends for PostObject and CompleteMultipartUpload."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import oss2
import pytest
import requests

from emulator import Emulator
from tests.emulator.conftest import BUCKET, REGION, StsCredentials


def encode_policy(conditions: list, *, expires_in: float = 3600, now: float | None = None) -> str:
    moment = (now if now is not None else datetime.now(UTC).timestamp()) + expires_in
    expiration = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    document = {"expiration": expiration, "conditions": conditions}
    return base64.b64encode(json.dumps(document).encode()).decode()


def v1_fields(creds: StsCredentials, policy: str) -> dict[str, str]:
    signature = hmac.new(creds.access_key_secret.encode(), policy.encode(), hashlib.sha1).digest()
    return {
        "policy": policy,
        "OSSAccessKeyId": creds.access_key_id,
        "Signature": base64.b64encode(signature).decode(),
        "x-oss-security-token": creds.security_token,
    }


def v4_fields(creds: StsCredentials, policy: str, *, fix_in_policy: bool = True) -> dict[str, str]:
    """The V4 form fields; the policy fixes the signer's fields, as OSS requires of V4."""
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    signer = {
        "x-oss-signature-version": "OSS4-HMAC-SHA256",
        "x-oss-credential": f"{creds.access_key_id}/{now[:8]}/{REGION}/oss/aliyun_v4_request",
        "x-oss-date": now,
    }
    if fix_in_policy:
        document = json.loads(base64.b64decode(policy))
        document["conditions"] += [{name: value} for name, value in signer.items()]
        policy = base64.b64encode(json.dumps(document).encode()).decode()
    key = ("aliyun_v4" + creds.access_key_secret).encode()
    for part in (now[:8], REGION, "oss", "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return {
        "policy": policy,
        **signer,
        "x-oss-signature": hmac.new(key, policy.encode(), hashlib.sha256).hexdigest(),
        "x-oss-security-token": creds.security_token,
    }


def post(emu: Emulator, fields: dict[str, str], content: bytes, filename: str = "a.jpg"):
    return requests.post(
        f"{emu.endpoint}/{BUCKET}",
        data=fields,
        files={"file": (filename, content, "image/jpeg")},
        timeout=10,
    )


@pytest.fixture(params=["v1", "v4"])
def signer(request):
    return v1_fields if request.param == "v1" else v4_fields


ALICE_CONDITIONS = [
    {"bucket": BUCKET},
    ["starts-with", "$key", "users/alice/"],
    ["content-length-range", 1, 1024 * 1024],
]


def test_post_object_stores_the_file(emu, alice_creds, root_bucket, signer):
    content = os.urandom(5000) + b"\r\n--not-a-boundary\r\n" + os.urandom(100)
    fields = {
        "key": "users/alice/${filename}",
        "x-oss-meta-source": "form",
        "success_action_status": "201",
        **signer(alice_creds, encode_policy(ALICE_CONDITIONS)),
    }
    response = post(emu, fields, content, filename="pic.jpg")
    assert response.status_code == 201, response.content
    assert b"<Key>users/alice/pic.jpg</Key>" in response.content
    etag = hashlib.md5(content, usedforsecurity=False).hexdigest().upper()
    assert response.headers["ETag"] == f'"{etag}"'
    stored = root_bucket.get_object("users/alice/pic.jpg")
    assert stored.read() == content
    assert stored.content_type == "image/jpeg"
    assert stored.headers["x-oss-meta-source"] == "form"


@pytest.mark.parametrize(
    ("key", "content", "status", "code"),
    [
        ("elsewhere/a.jpg", b"x", 403, "AccessDenied"),  # starts-with fails
        ("users/alice/big.jpg", b"x" * (1024 * 1024 + 1), 400, "EntityTooLarge"),
        ("users/alice/empty.jpg", b"", 400, "EntityTooSmall"),
    ],
)
def test_post_object_policy_conditions_enforced(
    emu, alice_creds, root_bucket, signer, key, content, status, code
):
    fields = {"key": key, **signer(alice_creds, encode_policy(ALICE_CONDITIONS))}
    response = post(emu, fields, content)
    assert response.status_code == status
    assert f"<Code>{code}</Code>".encode() in response.content
    assert root_bucket.object_exists(key) is False


def test_post_object_eq_and_bucket_conditions(emu, alice_creds, root_bucket):
    policy = encode_policy([{"bucket": "other-bucket"}])
    response = post(emu, {"key": "users/alice/a.jpg", **v1_fields(alice_creds, policy)}, b"x")
    assert response.status_code == 403
    assert b"Policy Condition failed" in response.content
    policy = encode_policy([["eq", "$key", "users/alice/exact.jpg"]])
    response = post(emu, {"key": "users/alice/other.jpg", **v1_fields(alice_creds, policy)}, b"x")
    assert response.status_code == 403
    response = post(emu, {"key": "users/alice/exact.jpg", **v1_fields(alice_creds, policy)}, b"x")
    assert response.status_code == 204


def test_post_object_expired_policy(emu, alice_creds):
    policy = encode_policy(ALICE_CONDITIONS, expires_in=-1)
    response = post(emu, {"key": "users/alice/a.jpg", **v1_fields(alice_creds, policy)}, b"x")
    assert response.status_code == 403
    assert b"Policy expired" in response.content


def test_post_object_bad_signature_and_missing_fields(emu, alice_creds):
    policy = encode_policy(ALICE_CONDITIONS)
    fields = {"key": "users/alice/a.jpg", **v1_fields(alice_creds, policy)}
    fields["Signature"] = base64.b64encode(b"0" * 20).decode()
    response = post(emu, fields, b"x")
    assert response.status_code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in response.content
    anonymous = post(emu, {"key": "users/alice/a.jpg"}, b"x")
    assert anonymous.status_code == 403
    no_file = requests.post(
        f"{emu.endpoint}/{BUCKET}", files={"key": (None, "users/alice/a.jpg")}, timeout=10
    )
    assert no_file.status_code == 400
    garbage = requests.post(
        f"{emu.endpoint}/{BUCKET}",
        data=b"--xyz\r\nnot headers",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        timeout=10,
    )
    assert garbage.status_code == 400
    assert b"<Code>MalformedPOSTRequest</Code>" in garbage.content


# -- callbacks -------------------------------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict, bytes]]

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        payload = json.dumps({"ok": True, "echo": body.decode()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def receiver() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def callback_header(receiver, body: str) -> str:
    spec = {
        "callbackUrl": f"http://127.0.0.1:{receiver.server_address[1]}/cb",
        "callbackBody": body,
        "callbackBodyType": "application/json",
    }
    return base64.b64encode(json.dumps(spec).encode()).decode()


def test_complete_multipart_upload_sends_the_callback(alice, receiver):
    key = "users/alice/video.mp4"
    upload_id = alice.init_multipart_upload(key).upload_id
    one = alice.upload_part(key, upload_id, 1, b"a" * (100 * 1024))
    two = alice.upload_part(key, upload_id, 2, b"b" * 10)
    callback = callback_header(
        receiver, '{"key":"${object}","size":${size},"op":"${operation}","who":"${x:who}"}'
    )
    callback_var = base64.b64encode(json.dumps({"x:who": "alice"}).encode()).decode()
    result = alice.complete_multipart_upload(
        key,
        upload_id,
        [oss2.models.PartInfo(1, one.etag), oss2.models.PartInfo(2, two.etag)],
        headers={"x-oss-callback": callback, "x-oss-callback-var": callback_var},
    )
    assert result.status == 200
    assert len(receiver.received) == 1
    path, _headers, body = receiver.received[0]
    assert path == "/cb"
    sent = json.loads(body)
    assert sent == {
        "key": key,
        "size": 100 * 1024 + 10,
        "op": "CompleteMultipartUpload",
        "who": "alice",
    }
    assert json.loads(result.resp.read())["ok"] is True
    assert alice.head_object(key).content_length == 100 * 1024 + 10


def test_post_object_sends_the_callback_with_form_variables(emu, alice_creds, receiver):
    callback = callback_header(receiver, '{"key":"${object}","mime":"${mimeType}","v":"${x:tag}"}')
    fields = {
        "key": "users/alice/form.jpg",
        "callback": callback,
        "x:tag": "from-form",
        **v1_fields(alice_creds, encode_policy(ALICE_CONDITIONS)),
    }
    response = post(emu, fields, b"jpeg-ish")
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["ok"] is True
    _, _, body = receiver.received[0]
    assert json.loads(body) == {
        "key": "users/alice/form.jpg",
        "mime": "image/jpeg",
        "v": "from-form",
    }


def test_callback_failure_gives_203_and_keeps_the_object(alice):
    spec = {"callbackUrl": "http://127.0.0.1:9/unreachable", "callbackBody": "k=${object}"}
    header = base64.b64encode(json.dumps(spec).encode()).decode()
    result = alice.put_object("users/alice/kept.txt", b"kept", headers={"x-oss-callback": header})
    assert result.status == 203
    assert b"<Code>CallbackFailed</Code>" in result.resp.read()
    assert alice.get_object("users/alice/kept.txt").read() == b"kept"


def test_invalid_callback_refused_before_storing(alice):
    with pytest.raises(oss2.exceptions.InvalidArgument):
        alice.put_object(
            "users/alice/never.txt", b"x", headers={"x-oss-callback": "!!not base64!!"}
        )
    assert alice.object_exists("users/alice/never.txt") is False


def test_public_key_is_served(emu):
    response = requests.get(emu.public_key_url, timeout=10)
    assert response.status_code == 200
    assert response.content == emu.public_key_pem
    assert response.content.startswith(b"-----BEGIN PUBLIC KEY-----")
