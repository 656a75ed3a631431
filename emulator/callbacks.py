"""OSS upload callbacks, as OSS sends them after PutObject, PostObject and CompleteMultipartUpload.

What this reproduces of OSS (wire facts: docs/alibaba-wire.md, upload callbacks):

- `x-oss-callback` / `x-oss-callback-var` parsing: each header at most 5 KB, base64 of a JSON
  object; `callbackUrl` (required, up to 5 URLs joined by ";", http or https; a URL without a
  scheme means http), `callbackHost`, `callbackBody` (required, non-empty),
  `callbackBodyType` (`application/x-www-form-urlencoded`, the default, or `application/json`),
  `callbackSNI`. Custom variables are keys `x:<lowercase>` with string values. Any violation raises
  `CallbackArgumentError`, which the OSS layer turns into 400 InvalidArgument.
- Body rendering: `${bucket} ${object} ${etag} ${size} ${mimeType} ${imageInfo.height}
  ${imageInfo.width} ${imageInfo.format} ${crc64} ${contentMd5} ${vpcId} ${clientIp} ${reqId}
  ${operation}` and `${x:name}`; substituted values are URL-encoded in form bodies and
  JSON-escaped in JSON bodies, so an object key cannot break the body's syntax. A variable that
  has no value (an `x:` variable that was not sent, image fields of a non-image) becomes "".
- Image facts come from emulator.oss.images (the object's header bytes only).
- The POST OSS makes: the URLs are tried in order until one succeeds; headers `authorization`
  (base64 RSA PKCS#1 v1.5 signature with MD5 over `url_decode(path)` + `"?" + raw query` if any
  + "\\n" + body), `x-oss-pub-key-url` (base64 of the URL where the public key is served),
  `content-md5`, `content-type`, `date`, `user-agent: aliyun-oss-callback`, `x-oss-bucket`,
  `x-oss-owner`, `x-oss-requester`, `x-oss-request-id`, `x-oss-signature-version: 1.0`,
  `x-oss-tag: CALLBACK`, and `Host` = `callbackHost` when given (https callbacks always send
  SNI: Python's TLS stack gives no way to leave it out, so `callbackSNI` is parsed but has no
  effect). OSS signs with its own RSA key;
  the emulator signs with a key of its own, created once and persisted next to its data.
- The outcome: HTTP 200 with a valid JSON body (no BOM) within the timeout (5 seconds, bounded in
  total, not per socket read) is a success and that JSON becomes the upload's response body.
  Anything else is HTTP 203 with error XML `CallbackFailed` and OSS's messages ("Error status :
  502.", "Response body is not valid json format.", "... reply timeout ..."). OSS does not retry
  and the object stays stored; that part is the caller's (the OSS layer's) business.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from types import MappingProxyType
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from emulator.oss.images import ImageInfo

MAX_HEADER_BYTES = 5 * 1024
MAX_URLS = 5
MAX_RESPONSE_BYTES = 3 * 1024 * 1024
FORM = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
_VAR_KEY = re.compile(r"^x:[a-z0-9_\-.]+$")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_HOST_ID = "oss-emulator.local"


class CallbackArgumentError(Exception):
    """An x-oss-callback or x-oss-callback-var header OSS refuses with 400 InvalidArgument."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class CallbackSpec:
    urls: tuple[str, ...]
    host: str | None
    body_template: str
    body_type: str  # FORM or JSON_TYPE
    variables: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    sni: bool = False


@dataclass(frozen=True)
class ObjectFacts:
    bucket: str
    key: str
    etag: str
    size: int
    mime_type: str
    crc64: str
    content_md5: str
    client_ip: str
    request_id: str
    operation: str
    image: ImageInfo | None
    owner: str
    requester: str


@dataclass(frozen=True)
class CallbackResult:
    ok: bool
    status: int  # 200 on success, 203 when the callback failed
    body: bytes
    content_type: str
    error: str | None


# --- parsing -----------------------------------------------------------------------------------


def _decode_json_header(value: str, name: str) -> dict:
    if len(value.encode()) > MAX_HEADER_BYTES:
        raise CallbackArgumentError(f"The {name} header is longer than {MAX_HEADER_BYTES} bytes.")
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CallbackArgumentError(f"The {name} header is not base64 encoded.") from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CallbackArgumentError(f"The {name} header is not a valid json.") from None
    if not isinstance(document, dict):
        raise CallbackArgumentError(f"The {name} header is not a json object.")
    return document


def _callback_url(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        raise CallbackArgumentError(f"The callbackUrl {url} is invalid.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackArgumentError(f"The callbackUrl {url} is invalid.")
    return url


def parse_callback(callback_b64: str, callback_var_b64: str | None) -> CallbackSpec:
    """Validate x-oss-callback (and x-oss-callback-var) as OSS does before storing the object."""
    document = _decode_json_header(callback_b64, "x-oss-callback")
    raw_urls = document.get("callbackUrl")
    if not isinstance(raw_urls, str) or not raw_urls.strip():
        raise CallbackArgumentError("The callbackUrl is missing in the callback configuration.")
    pieces = [piece for piece in raw_urls.split(";") if piece.strip()]
    if not pieces:
        raise CallbackArgumentError("The callbackUrl is missing in the callback configuration.")
    if len(pieces) > MAX_URLS:
        raise CallbackArgumentError(f"The callbackUrl has more than {MAX_URLS} urls.")
    urls = tuple(_callback_url(piece) for piece in pieces)
    body = document.get("callbackBody")
    if not isinstance(body, str) or not body:
        raise CallbackArgumentError("The callbackBody is missing in the callback configuration.")
    host = document.get("callbackHost")
    if host is not None and (not isinstance(host, str) or not host.strip() or not host.isascii()):
        raise CallbackArgumentError("The callbackHost is invalid.")
    body_type = document.get("callbackBodyType", FORM)
    if not isinstance(body_type, str) or body_type.strip().lower() not in (FORM, JSON_TYPE):
        raise CallbackArgumentError(
            f"The callbackBodyType must be {FORM} or {JSON_TYPE}, not {body_type!r}."
        )
    sni = document.get("callbackSNI", False)
    if isinstance(sni, str):
        sni = sni.strip().lower() == "true"
    elif not isinstance(sni, bool):
        raise CallbackArgumentError("The callbackSNI must be true or false.")
    variables: dict[str, str] = {}
    if callback_var_b64:
        for key, value in _decode_json_header(callback_var_b64, "x-oss-callback-var").items():
            if not _VAR_KEY.match(key):
                raise CallbackArgumentError(
                    f"The callback variable {key} is invalid: keys start with x: and are lowercase."
                )
            if not isinstance(value, str):
                raise CallbackArgumentError(
                    f"The value of callback variable {key} must be a string."
                )
            variables[key] = value
    return CallbackSpec(
        urls=urls,
        host=host.strip() if isinstance(host, str) else None,
        body_template=body,
        body_type=body_type.strip().lower(),
        variables=MappingProxyType(variables),
        sni=sni,
    )


# --- body --------------------------------------------------------------------------------------


def _system_values(facts: ObjectFacts) -> dict[str, str]:
    image = facts.image
    return {
        "bucket": facts.bucket,
        "object": facts.key,
        "etag": facts.etag.strip('"'),
        "size": str(facts.size),
        "mimeType": facts.mime_type,
        "imageInfo.height": str(image.height) if image else "",
        "imageInfo.width": str(image.width) if image else "",
        "imageInfo.format": image.format if image else "",
        "crc64": facts.crc64,
        "contentMd5": facts.content_md5,
        "vpcId": "",
        "clientIp": facts.client_ip,
        "reqId": facts.request_id,
        "operation": facts.operation,
    }


def render_body(spec: CallbackSpec, facts: ObjectFacts) -> bytes:
    """The callback body: the template with every ${variable} substituted and escaped."""
    values = _system_values(facts)
    if spec.body_type == JSON_TYPE:

        def escape_value(value: str) -> str:
            return json.dumps(value, ensure_ascii=False)[1:-1]

    else:

        def escape_value(value: str) -> str:
            return quote(value, safe="")

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        value = spec.variables.get(name) if name.startswith("x:") else values.get(name)
        return escape_value(value or "")

    return _VARIABLE.sub(substitute, spec.body_template).encode("utf-8")


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
