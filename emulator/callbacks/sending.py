"""How OSS sends a callback: its RSA signature, the POST to each URL in turn within the time
budget, and the outcome (the rules are in emulator/callbacks/__init__.py)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from emulator.callbacks.spec import (
    _HOST_ID,
    MAX_RESPONSE_BYTES,
    CallbackResult,
    CallbackSpec,
    ObjectFacts,
    render_body,
)

# --- signing -----------------------------------------------------------------------------------


class CallbackSigner:
    """The RSA key the emulator signs callbacks with (OSS uses its own published key)."""

    def __init__(self, key_path: Path | None) -> None:
        if key_path is None:
            self._key = self._generate()
        elif Path(key_path).exists():
            loaded = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{key_path} does not hold an RSA private key")
            self._key = loaded
        else:
            self._key = self._generate()
            self._persist(Path(key_path))
        self.public_key_pem: bytes = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @staticmethod
    def _generate() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def _persist(self, path: Path) -> None:
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name and renamed, so a crash never leaves half a key.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.replace(temporary, path)

    def sign(self, data: bytes) -> bytes:
        # MD5 because that is what OSS signs callbacks with; receivers verify with MD5.
        return self._key.sign(data, padding.PKCS1v15(), hashes.MD5())  # noqa: S303


# --- sending -----------------------------------------------------------------------------------


def string_to_sign(url: str, body: bytes) -> bytes:
    """What OSS signs: the decoded path, the raw query if any, a newline and the body."""
    parts = urlsplit(url)
    signed = unquote(parts.path or "/")
    if parts.query:
        signed += "?" + parts.query
    return signed.encode("utf-8") + b"\n" + body


def _failure_xml(message: str, request_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error>\n"
        "  <Code>CallbackFailed</Code>\n"
        f"  <Message>{escape(message)}</Message>\n"
        f"  <RequestId>{escape(request_id)}</RequestId>\n"
        f"  <HostId>{_HOST_ID}</HostId>\n"
        "</Error>\n"
    ).encode()


class _Attempt:
    """One POST to one callback URL, with a hard deadline on the whole exchange."""

    def __init__(self, url: str, *, deadline: float) -> None:
        self.url = url
        self.deadline = deadline
        self.timed_out = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _expire(self) -> None:
        # Called by a timer at the deadline: shut the socket so a blocked read returns at once.
        # The socket itself is kept, not the connection: http.client drops connection.sock as soon
        # as a response says the connection will close, while the response still reads from it.
        with self._lock:
            self.timed_out = True
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing to interrupt
                sock.shutdown(socket.SHUT_RDWR)

    def post(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        parts = urlsplit(self.url)
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.timed_out = True
            raise TimeoutError("no time left for this callback")
        if parts.scheme == "https":
            context = ssl.create_default_context()
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=remaining, context=context
            )
        else:
            connection = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=remaining
            )
        timer = threading.Timer(remaining, self._expire)
        timer.daemon = True
        timer.start()
        try:
            connection.connect()
            with self._lock:
                self._sock = connection.sock
                if self.timed_out:
                    raise TimeoutError("no time left for this callback")
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            connection.putrequest("POST", target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            data = response.read(MAX_RESPONSE_BYTES + 1)
            return response.status, data
        finally:
            timer.cancel()
            connection.close()


def send_callback(
    spec: CallbackSpec,
    facts: ObjectFacts,
    *,
    signer: CallbackSigner,
    public_key_url: str,
    timeout: float = 5.0,
) -> CallbackResult:
    """POST the rendered body to the callback URLs in order until one answers 200 with JSON."""
    body = render_body(spec, facts)
    deadline = time.monotonic() + timeout
    error = "Error status : -1. OSS can not connect to callbackUrl."
    for url in spec.urls:
        parts = urlsplit(url)
        host = spec.host or parts.netloc
        headers = {
            "Host": host,
            "Authorization": base64.b64encode(signer.sign(string_to_sign(url, body))).decode(),
            "x-oss-pub-key-url": base64.b64encode(public_key_url.encode()).decode(),
            "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),  # noqa: S324
            "Content-Type": spec.body_type,
            "Content-Length": str(len(body)),
            "Date": formatdate(usegmt=True),
            "User-Agent": "aliyun-oss-callback",
            "x-oss-bucket": facts.bucket,
            "x-oss-owner": facts.owner,
            "x-oss-requester": facts.requester,
            "x-oss-request-id": facts.request_id,
            "x-oss-signature-version": "1.0",
            "x-oss-tag": "CALLBACK",
        }
        attempt = _Attempt(url, deadline=deadline)
        timeout_error = (
            f"Error status : -1 8.Callback server reply timeout ({timeout:g}s), please check "
            f"url({url})."
        )
        try:
            status, data = attempt.post(headers, body)
        except TimeoutError:
            error = timeout_error
            break  # the whole time budget is spent, for every URL
        except (OSError, http.client.HTTPException, ValueError):
            # ValueError: http.client refuses a header or URL it cannot encode.
            if attempt.timed_out:
                error = timeout_error
                break
            error = (
                f"Error status : -1. OSS can not connect to callbackUrl, please check url({url})."
            )
            continue
        if attempt.timed_out:
            error = timeout_error
            break
        if status != 200:
            error = f"Error status : {status}."
            continue
        if len(data) > MAX_RESPONSE_BYTES:
            error = "Response body is too large."
            continue
        try:
            # Decoded strictly first: json.loads(bytes) would quietly accept a BOM; OSS does not.
            json.loads(data.decode("utf-8"))
        except ValueError:
            error = "Response body is not valid json format."
            continue
        return CallbackResult(
            ok=True, status=200, body=data, content_type="application/json", error=None
        )
    return CallbackResult(
        ok=False,
        status=203,
        body=_failure_xml(error, facts.request_id),
        content_type="application/xml",
        error=error,
    )
