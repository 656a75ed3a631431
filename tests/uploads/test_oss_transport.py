"""HeadObject's own transport (uploads/oss/client.py `_Session`): oss2 signs the request and
reads the answer; the bytes go over one kept-alive http.client connection per thread. Against the
emulator (signature checked there) and against small local servers that misbehave on purpose."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import ssl
import time

import oss2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import LocalServer, in_a_new_thread
from uploads import oss


def test_head_object_reports_what_oss_stores(alibaba, settings):
    root = oss2.Bucket(
        oss2.make_auth(settings.ALIBABA_ACCESS_KEY_ID, settings.ALIBABA_ACCESS_KEY_SECRET, "v4"),
        alibaba.endpoint,
        settings.OSS_BUCKET,
        region=settings.OSS_REGION,
    )
    put = root.put_object("users/t/a b+ü.txt", b"x" * 123, headers={"Content-Type": "text/csv"})

    def heads():
        return [oss.oss_head_object(key="users/t/a b+ü.txt") for _ in range(3)], (
            oss.oss_head_object(key="users/t/missing.txt")
        )

    outcome = in_a_new_thread(heads)
    found, missing = outcome["result"]
    assert len({info.request_id for info in found}) == 3  # three real requests
    assert len({(i.key, i.size, i.etag, i.content_type, i.crc64) for i in found}) == 1
    info = found[0]
    assert (info.key, info.size, info.content_type) == ("users/t/a b+ü.txt", 123, "text/csv")
    assert info.etag == put.etag.upper()
    assert info.crc64 == str(put.crc)
    assert missing is None


def test_head_object_is_signed_with_the_servers_key(alibaba, settings):
    settings.ALIBABA_ACCESS_KEY_SECRET = "not-the-secret"
    outcome = in_a_new_thread(lambda: oss.oss_head_object(key="users/t/a.txt"))
    error = outcome.get("error")
    assert isinstance(error, oss.StorageUnavailable)
    assert "403" in error.message  # the emulator checked the signature and refused it


class _Recorder:
    """An HTTP/1.1 server that answers HEAD like OSS and records each connection it accepts.

    `close_after` makes it drop a connection after that many answers without saying so, as a
    server's idle timeout does; `hang` makes it accept and never answer."""

    def __init__(
        self, *, close_after: int = 0, hang: bool = False, tls: ssl.SSLContext | None = None
    ):
        self.connections: list[tuple[str, int]] = []
        self.requests: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                recorder.connections.append(self.client_address)
                self.answered = 0

            def do_HEAD(self) -> None:
                if hang:
                    time.sleep(5)
                    return
                recorder.requests.append(self.headers.get("authorization", ""))
                self.send_response(200)
                self.send_header("Content-Length", "7")
                self.send_header("Content-Type", "image/png")
                self.send_header("ETag", '"ABC"')
                self.send_header("x-oss-request-id", f"REQ{len(recorder.requests)}")
                self.end_headers()
                self.answered += 1
                if close_after and self.answered >= close_after:
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.local = LocalServer(Handler, tls=tls)
        self.endpoint = self.local.url

    def close(self) -> None:
        self.local.close()


@pytest.fixture
def no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_one_connection_serves_a_threads_head_requests(settings, no_proxy):
    server = _Recorder()
    settings.OSS_ENDPOINT = server.endpoint
    try:
        outcome = in_a_new_thread(lambda: [oss.oss_head_object(key="k.png") for _ in range(5)])
    finally:
        server.close()
    results = outcome["result"]
    assert [r.request_id for r in results] == ["REQ1", "REQ2", "REQ3", "REQ4", "REQ5"]
    assert all(r.size == 7 and r.content_type == "image/png" and r.etag == "ABC" for r in results)
    assert all(auth.startswith("OSS4-HMAC-SHA256 ") for auth in server.requests)
    assert len(server.connections) == 1


def test_a_connection_the_server_closed_is_replaced_once(settings, no_proxy):
    server = _Recorder(close_after=1)  # every connection serves one request, then goes away
    settings.OSS_ENDPOINT = server.endpoint
    try:
        outcome = in_a_new_thread(lambda: [oss.oss_head_object(key="k.png") for _ in range(3)])
    finally:
        server.close()
    assert [r.request_id for r in outcome["result"]] == ["REQ1", "REQ2", "REQ3"]
    assert len(server.connections) == 3


def test_a_silent_server_is_given_up_on_within_the_timeout(settings, no_proxy):
    server = _Recorder(hang=True)
    settings.OSS_ENDPOINT = server.endpoint
    # Beyond the 30 s in_a_new_thread waits: only the call's own 0.5 s can end it in time.
    settings.OSS_TIMEOUT_SECONDS = 120
    try:
        outcome = in_a_new_thread(lambda: oss.oss_head_object(key="k.png", timeout=0.5))
    finally:
        server.close()
    assert isinstance(outcome.get("error"), oss.StorageUnavailable), outcome
    assert len(server.connections) == 1  # a new connection that timed out is not retried


def test_nothing_listening_is_storage_unavailable(settings, no_proxy):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.OSS_ENDPOINT = f"http://127.0.0.1:{port}"
    outcome = in_a_new_thread(lambda: oss.oss_head_object(key="k.png"))
    assert isinstance(outcome.get("error"), oss.StorageUnavailable)


def _self_signed_tls() -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_pem_files(cert, key))
    return context


def _pem_files(cert, key) -> tuple[str, str]:
    import tempfile

    folder = tempfile.mkdtemp()
    cert_path, key_path = f"{folder}/cert.pem", f"{folder}/key.pem"
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def test_https_certificates_are_verified(settings, no_proxy):
    server = _Recorder(tls=_self_signed_tls())
    settings.OSS_ENDPOINT = server.endpoint
    try:
        outcome = in_a_new_thread(lambda: oss.oss_head_object(key="k.png"))
    finally:
        server.close()
    error = outcome.get("error")
    assert isinstance(error, oss.StorageUnavailable)
    assert isinstance(error.__cause__.exception, ssl.SSLCertVerificationError)
    assert server.requests == []  # nothing was sent to a server that could not prove itself
