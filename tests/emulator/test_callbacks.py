"""OSS upload callbacks (emulator/callbacks/, emulator/oss/images.py): parsing, rendering, image
headers, and real signed POSTs to a loopback receiver, verified the way the app server verifies
them."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import stat
import struct
import threading
import urllib.request
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

import crcmod
import oss2
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from emulator import Emulator, EmulatorConfig
from emulator.callbacks import (
    FORM,
    JSON_TYPE,
    CallbackArgumentError,
    CallbackSigner,
    CallbackSpec,
    ObjectFacts,
    parse_callback,
    render_body,
    send_callback,
)
from emulator.config import (
    DEFAULT_BUCKET,
    DEFAULT_ROOT_ACCESS_KEY_ID,
    DEFAULT_ROOT_ACCESS_KEY_SECRET,
)
from emulator.oss.images import ImageInfo, image_info


def b64json(document) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


FACTS = ObjectFacts(
    bucket="app-uploads",
    key='users/42/a b&c"d.png',
    etag="5EB63BBBE01EEED093CB22BB8F5ACDC3",
    size=11,
    mime_type="image/png",
    crc64="5981764153023615706",
    content_md5="XrY7u+Ae7tCTyyK7j1rNww==",
    client_ip="127.0.0.1",
    request_id="5C1B138A109F4E405B2D8AEF",
    operation="PutObject",
    image=ImageInfo(width=640, height=480, format="png"),
    owner="1000000000000001",
    requester="STS.abc",
)


@pytest.fixture(scope="module")
def signer() -> CallbackSigner:
    return CallbackSigner(None)


# --- parsing -----------------------------------------------------------------------------------


def test_parse_defaults_and_fields():
    spec = parse_callback(
        b64json(
            {
                "callbackUrl": "http://127.0.0.1:8000/cb;https://example.com/cb?x=1;"
                "oss-demo.example.com:23450",
                "callbackHost": "api.example.com",
                "callbackBody": "bucket=${bucket}",
                "callbackSNI": True,
            }
        ),
        b64json({"x:user": "42", "x:note": "hello"}),
    )
    assert spec.urls == (
        "http://127.0.0.1:8000/cb",
        "https://example.com/cb?x=1",
        "http://oss-demo.example.com:23450",
    )
    assert spec.host == "api.example.com"
    assert spec.body_template == "bucket=${bucket}"
    assert spec.body_type == FORM
    assert dict(spec.variables) == {"x:user": "42", "x:note": "hello"}
    assert spec.sni is True


def test_parse_json_body_type_without_vars():
    spec = parse_callback(
        b64json(
            {
                "callbackUrl": "http://h/cb",
                "callbackBody": '{"k":"${object}"}',
                "callbackBodyType": "application/json",
            }
        ),
        None,
    )
    assert (spec.body_type, dict(spec.variables), spec.host, spec.sni) == (
        JSON_TYPE,
        {},
        None,
        False,
    )


GOOD = {"callbackUrl": "http://h/cb", "callbackBody": "a=${bucket}"}


@pytest.mark.parametrize(
    ("callback", "callback_var", "message"),
    [
        ("A" * 5121, None, "The x-oss-callback header is longer than 5120 bytes."),
        ("not base64!", None, "The x-oss-callback header is not base64 encoded."),
        (
            base64.b64encode(b"{nope").decode(),
            None,
            "The x-oss-callback header is not a valid json.",
        ),
        (
            base64.b64encode(b"\xff\xfe").decode(),
            None,
            "The x-oss-callback header is not a valid json.",
        ),
        (b64json(["x"]), None, "The x-oss-callback header is not a json object."),
        (b64json({"callbackBody": "a"}), None, "The callbackUrl is missing"),
        (b64json({**GOOD, "callbackUrl": " ; "}), None, "The callbackUrl is missing"),
        (b64json({**GOOD, "callbackUrl": 5}), None, "The callbackUrl is missing"),
        (
            b64json({**GOOD, "callbackUrl": ";".join(["http://h/a"] * 6)}),
            None,
            "The callbackUrl has more than 5 urls.",
        ),
        (
            b64json({**GOOD, "callbackUrl": "ftp://h/cb"}),
            None,
            "The callbackUrl ftp://h/cb is invalid.",
        ),
        (b64json({**GOOD, "callbackUrl": "http://h:port/cb"}), None, "is invalid."),
        (b64json({"callbackUrl": "http://h/cb"}), None, "The callbackBody is missing"),
        (b64json({**GOOD, "callbackBody": ""}), None, "The callbackBody is missing"),
        (b64json({**GOOD, "callbackBodyType": "text/plain"}), None, "The callbackBodyType must be"),
        (b64json({**GOOD, "callbackHost": ""}), None, "The callbackHost is invalid."),
        (b64json({**GOOD, "callbackHost": "hôte.example"}), None, "The callbackHost is invalid."),
        (b64json({**GOOD, "callbackSNI": 3}), None, "The callbackSNI must be true or false."),
        (b64json(GOOD), b64json({"user": "42"}), "The callback variable user is invalid"),
        (b64json(GOOD), b64json({"x:User": "42"}), "The callback variable x:User is invalid"),
        (b64json(GOOD), b64json({"x:user": 42}), "The value of callback variable x:user must be"),
        (b64json(GOOD), "%%%", "The x-oss-callback-var header is not base64 encoded."),
        (b64json(GOOD), "B" * 5121, "The x-oss-callback-var header is longer than 5120 bytes."),
    ],
)
def test_parse_errors(callback, callback_var, message):
    with pytest.raises(CallbackArgumentError) as info:
        parse_callback(callback, callback_var)
    assert message in info.value.message


# --- rendering ---------------------------------------------------------------------------------

ALL_VARS = (
    "${bucket}|${object}|${etag}|${size}|${mimeType}|${imageInfo.height}|${imageInfo.width}|"
    "${imageInfo.format}|${crc64}|${contentMd5}|${vpcId}|${clientIp}|${reqId}|${operation}|"
    "${x:user}|${x:missing}|${unknown}"
)


def spec_for(template: str, body_type: str = FORM, **variables: str) -> CallbackSpec:
    return CallbackSpec(
        urls=("http://h/cb",),
        host=None,
        body_template=template,
        body_type=body_type,
        variables=variables,
        sni=False,
    )


def test_render_form_body_url_encodes_values():
    spec = spec_for(ALL_VARS, **{"x:user": "42 & more"})
    assert render_body(spec, FACTS) == (
        b"app-uploads|users%2F42%2Fa%20b%26c%22d.png|5EB63BBBE01EEED093CB22BB8F5ACDC3|11|"
        b"image%2Fpng|480|640|png|5981764153023615706|XrY7u%2BAe7tCTyyK7j1rNww%3D%3D||127.0.0.1|"
        b"5C1B138A109F4E405B2D8AEF|PutObject|42%20%26%20more||"
    )


def test_render_json_body_escapes_values():
    template = '{"object":"${object}","size":${size},"user":"${x:user}","h":"${imageInfo.height}"}'
    spec = spec_for(template, JSON_TYPE, **{"x:user": 'a"b\\c\nd é'})
    body = render_body(spec, FACTS)
    assert json.loads(body) == {
        "object": 'users/42/a b&c"d.png',
        "size": 11,
        "user": 'a"b\\c\nd é',
        "h": "480",
    }


def test_render_non_image_leaves_image_fields_empty():
    facts = ObjectFacts(**{**FACTS.__dict__, "image": None, "etag": '"ABC"'})
    spec = spec_for("${imageInfo.width}-${imageInfo.height}-${imageInfo.format}-${etag}")
    assert render_body(spec, facts) == b"---ABC"


# --- image headers -----------------------------------------------------------------------------


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def gif(width: int, height: int) -> bytes:
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", width, height, 0x80, 0, 0)
        + b"\x00\x00\x00\xff\xff\xff"
        + b",\x00\x00\x00\x00"
        + struct.pack("<HH", width, height)
        + b"\x00\x02\x02\x44\x01\x00;"
    )


def bmp(width: int, height: int, *, core: bool = False) -> bytes:
    if core:
        dib = struct.pack("<IHHHH", 12, width, height, 1, 24)
    else:
        dib = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    row = (b"\x00\x00\xff" * width).ljust((width * 3 + 3) // 4 * 4, b"\x00")
    pixels = row * height
    offset = 14 + len(dib)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + dib + pixels


def jpeg(width: int, height: int, *, sof: int = 0xC0, app_size: int = 16) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", app_size + 2) + b"JFIF\x00".ljust(app_size, b"\x00")
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(64))
    frame = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    sof_segment = bytes([0xFF, sof]) + struct.pack(">H", len(frame) + 2) + frame
    return b"\xff\xd8" + app0 + b"\xff\xff" + dqt + sof_segment + b"\xff\xda" + b"\x00" * 100


def webp_vp8(width: int, height: int) -> bytes:
    payload = b"\x10\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 10
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(payload))
        + b"WEBP"
        + b"VP8 "
        + (struct.pack("<I", len(payload)) + payload)
    )


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    payload = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 8
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(payload))
        + b"WEBPVP8L"
        + (struct.pack("<I", len(payload)) + payload)
    )


def webp_vp8x(width: int, height: int) -> bytes:
    payload = (
        b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    )
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(payload))
        + b"WEBPVP8X"
        + (struct.pack("<I", len(payload)) + payload)
    )


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png(3, 2), ImageInfo(3, 2, "png")),
        (gif(5, 7), ImageInfo(5, 7, "gif")),
        (bmp(4, 3), ImageInfo(4, 3, "bmp")),
        (bmp(6, 2, core=True), ImageInfo(6, 2, "bmp")),
        (jpeg(1024, 768), ImageInfo(1024, 768, "jpg")),
        (jpeg(33, 17, sof=0xC2), ImageInfo(33, 17, "jpg")),  # progressive
        (jpeg(8, 9, app_size=60000), ImageInfo(8, 9, "jpg")),  # big APP segment skipped
        (webp_vp8(300, 200), ImageInfo(300, 200, "webp")),
        (webp_vp8l(129, 65), ImageInfo(129, 65, "webp")),
        (webp_vp8x(4000, 3000), ImageInfo(4000, 3000, "webp")),
        (b"hello world, not an image at all", None),
        (b"", None),
        (b"\xff\xd8\xff\xe0\x00", None),  # truncated JPEG
        (b"\xff\xd8\xff\xd9", None),  # JPEG without a frame
        (png(3, 2)[:20], None),  # truncated PNG
    ],
)
def test_image_info(data, expected):
    assert image_info(io.BytesIO(data)) == expected


def test_image_info_reads_only_the_header():
    big_png = png(3, 2) + b"\x00" * 5_000_000
    stream = CountingStream(big_png)
    assert image_info(stream) == ImageInfo(3, 2, "png")
    assert stream.bytes_read == 30
    big_jpeg = jpeg(10, 20) + b"\x00" * 5_000_000
    stream = CountingStream(big_jpeg)
    assert image_info(stream) == ImageInfo(10, 20, "jpg")
    assert stream.bytes_read < 200


# --- signer ------------------------------------------------------------------------------------


def verify(public_key_pem: bytes, signature: bytes, data: bytes) -> None:
    key = serialization.load_pem_public_key(public_key_pem)
    key.verify(signature, data, padding.PKCS1v15(), hashes.MD5())  # noqa: S303


def test_signer_persists_its_key(tmp_path):
    path = tmp_path / "keys" / "callback-key.pem"
    first = CallbackSigner(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    second = CallbackSigner(path)
    assert second.public_key_pem == first.public_key_pem
    assert first.public_key_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    verify(first.public_key_pem, second.sign(b"data"), b"data")
    with pytest.raises(InvalidSignature):
        verify(first.public_key_pem, second.sign(b"data"), b"other")


# --- sending -----------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    base: str
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    drip_finished: threading.Event = field(default_factory=threading.Event)


def _handler(receiver: Receiver):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            route = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
            if route == "slow":
                receiver.release.wait(10)
                return
            if route == "drip":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(100):
                    if receiver.release.wait(0.05):
                        return
                    self.wfile.write(b" ")
                    self.wfile.flush()
                receiver.drip_finished.set()
                return
            status, payload = {
                "fail": (502, b'{"error": "bad gateway"}'),
                "text": (200, b"OK"),
                "bom": (200, b'\xef\xbb\xbf{"ok": true}'),
                "empty": (200, b""),
            }.get(route, (200, b'{"Status": "OK", "upload": 7}'))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format, *args):
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), None)
    recv = Receiver(base=f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(recv)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    yield recv
    recv.release.set()
    server.shutdown()
    server.server_close()


def send(spec: CallbackSpec, signer: CallbackSigner, timeout: float = 5.0):
    return send_callback(
        spec,
        FACTS,
        signer=signer,
        public_key_url="http://127.0.0.1:9100/_emulator/callback-public-key.pem",
        timeout=timeout,
    )


def make_spec(*urls: str, body: str = "bucket=${bucket}&object=${object}", **extra) -> CallbackSpec:
    document = {"callbackUrl": ";".join(urls), "callbackBody": body, **extra}
    return parse_callback(b64json(document), b64json({"x:user": "42"}))


def test_successful_callback_is_signed_as_oss_signs(receiver, signer):
    url = f"{receiver.base}/cb/a%20b?token=x%2By&z=1"
    spec = make_spec(url, body="object=${object}&user=${x:user}", callbackHost="api.example.com")
    result = send(spec, signer)
    assert (result.ok, result.status, result.content_type, result.error) == (
        True,
        200,
        "application/json",
        None,
    )
    assert json.loads(result.body) == {"Status": "OK", "upload": 7}
    [request] = receiver.requests
    assert request.path == "/cb/a%20b?token=x%2By&z=1"
    assert request.body == b"object=users%2F42%2Fa%20b%26c%22d.png&user=42"
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["host"] == "api.example.com"
    assert headers["content-type"] == FORM
    assert headers["content-length"] == str(len(request.body))
    md5 = hashlib.md5(request.body).digest()  # noqa: S324 -- Content-MD5 is MD5 by definition
    assert headers["content-md5"] == base64.b64encode(md5).decode()
    assert headers["user-agent"] == "aliyun-oss-callback"
    assert headers["x-oss-bucket"] == "app-uploads"
    assert headers["x-oss-owner"] == "1000000000000001"
    assert headers["x-oss-requester"] == "STS.abc"
    assert headers["x-oss-request-id"] == "5C1B138A109F4E405B2D8AEF"
    assert headers["x-oss-signature-version"] == "1.0"
    assert headers["x-oss-tag"] == "CALLBACK"
    assert headers["date"].endswith(" GMT")
    assert base64.b64decode(headers["x-oss-pub-key-url"]) == (
        b"http://127.0.0.1:9100/_emulator/callback-public-key.pem"
    )
    # Verify as the app server does: decoded path + "?" + raw query + "\n" + body, RSA-MD5.
    path, _, query = request.path.partition("?")
    signed = unquote(path).encode() + b"?" + query.encode() + b"\n" + request.body
    verify(signer.public_key_pem, base64.b64decode(headers["authorization"]), signed)
    with pytest.raises(InvalidSignature):
        verify(signer.public_key_pem, base64.b64decode(headers["authorization"]), signed + b"x")


def test_json_callback_without_query_and_default_host(receiver, signer):
    spec = make_spec(
        f"{receiver.base}/cb",
        body='{"object":"${object}","size":${size}}',
        callbackBodyType="application/json",
    )
    result = send(spec, signer)
    assert result.ok
    [request] = receiver.requests
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["host"] == receiver.base.removeprefix("http://")
    assert headers["content-type"] == JSON_TYPE
    assert json.loads(request.body) == {"object": 'users/42/a b&c"d.png', "size": 11}
    signed = b"/cb\n" + request.body
    verify(signer.public_key_pem, base64.b64decode(headers["authorization"]), signed)


def failure_message(result) -> str:
    assert (result.ok, result.status, result.content_type) == (False, 203, "application/xml")
    root = ET.fromstring(result.body)  # noqa: S314 -- the emulator's own output
    assert root.tag == "Error"
    assert root.findtext("Code") == "CallbackFailed"
    assert root.findtext("RequestId") == FACTS.request_id
    assert root.findtext("Message") == result.error
    return result.error


def test_non_200_fails_with_the_status(receiver, signer):
    result = send(make_spec(f"{receiver.base}/fail"), signer)
    assert failure_message(result) == "Error status : 502."


@pytest.mark.parametrize("route", ["text", "bom", "empty"])
def test_body_that_is_not_json_fails(receiver, signer, route):
    result = send(make_spec(f"{receiver.base}/{route}"), signer)
    assert failure_message(result) == "Response body is not valid json format."


def test_urls_are_tried_in_order_until_one_succeeds(receiver, signer):
    spec = make_spec(f"{receiver.base}/fail", f"{receiver.base}/text", f"{receiver.base}/ok")
    result = send(spec, signer)
    assert result.ok
    assert [r.path for r in receiver.requests] == ["/fail", "/text", "/ok"]
    # all fail: the last failure is reported
    spec = make_spec(f"{receiver.base}/text", f"{receiver.base}/fail")
    assert failure_message(send(spec, signer)) == "Error status : 502."


def test_timeout(receiver, signer):
    result = send(make_spec(f"{receiver.base}/slow"), signer, timeout=0.3)
    message = failure_message(result)
    assert message.startswith("Error status : -1")
    assert "reply timeout" in message


def test_total_time_is_bounded_even_when_bytes_keep_trickling(receiver, signer):
    result = send(make_spec(f"{receiver.base}/drip"), signer, timeout=0.3)
    assert "reply timeout" in failure_message(result)
    # The receiver was still sending when the callback gave up: the deadline, not the end of
    # the drip (or a per-read timeout, which every trickled byte resets), ended the exchange.
    assert not receiver.drip_finished.is_set()


def test_connection_refused(signer):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cb"
    message = failure_message(send(make_spec(url), signer))
    assert (
        message
        == f"Error status : -1. OSS can not connect to callbackUrl, please check url({url})."
    )


# --- through the emulator, with oss2 -----------------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        yield emu


crc64_ecma = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)


def root_bucket(emu: Emulator) -> oss2.Bucket:
    auth = oss2.Auth(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET)
    return oss2.Bucket(auth, emu.endpoint, DEFAULT_BUCKET)


def callback_headers(url: str, body: str, body_type: str = JSON_TYPE, **variables: str) -> dict:
    headers = {
        "x-oss-callback": b64json(
            {"callbackUrl": url, "callbackBody": body, "callbackBodyType": body_type}
        )
    }
    if variables:
        headers["x-oss-callback-var"] = b64json(variables)
    return headers


def test_put_object_with_callback_through_the_emulator(emulator, receiver):
    bucket = root_bucket(emulator)
    body = (
        '{"bucket":"${bucket}","object":"${object}","size":${size},"etag":"${etag}",'
        '"mime":"${mimeType}","w":"${imageInfo.width}","h":"${imageInfo.height}",'
        '"fmt":"${imageInfo.format}","crc64":"${crc64}","op":"${operation}","user":"${x:user}"}'
    )
    image = png(7, 5)
    result = bucket.put_object(
        "users/42/pic.png",
        image,
        headers=callback_headers(f"{receiver.base}/cb?t=1", body, **{"x:user": "42"}),
    )
    assert result.status == 200
    assert json.loads(result.resp.read()) == {"Status": "OK", "upload": 7}
    [request] = receiver.requests
    sent = json.loads(request.body)
    assert sent == {
        "bucket": DEFAULT_BUCKET,
        "object": "users/42/pic.png",
        "size": len(image),
        "etag": hashlib.md5(image).hexdigest().upper(),  # noqa: S324 -- OSS ETags are MD5
        "mime": "image/png",
        "w": "7",
        "h": "5",
        "fmt": "png",
        "crc64": str(crc64_ecma(image)),
        "op": "PutObject",
        "user": "42",
    }
    # The receiver fetches the public key from x-oss-pub-key-url and verifies, as the app does.
    headers = {name.lower(): value for name, value in request.headers.items()}
    key_url = base64.b64decode(headers["x-oss-pub-key-url"]).decode()
    assert key_url == emulator.public_key_url
    with urllib.request.urlopen(key_url, timeout=5) as response:
        public_key_pem = response.read()
    signed = b"/cb?t=1\n" + request.body
    verify(public_key_pem, base64.b64decode(headers["authorization"]), signed)


def test_failed_callback_gives_203_and_keeps_the_object(emulator, receiver):
    bucket = root_bucket(emulator)
    result = bucket.put_object(
        "users/42/a.txt", b"kept", headers=callback_headers(f"{receiver.base}/fail", "{}")
    )
    assert result.status == 203
    root = ET.fromstring(result.resp.read())  # noqa: S314 -- the emulator's own output
    assert (root.findtext("Code"), root.findtext("Message")) == (
        "CallbackFailed",
        "Error status : 502.",
    )
    assert bucket.get_object("users/42/a.txt").read() == b"kept"


def test_invalid_callback_header_is_refused_before_storing(emulator):
    bucket = root_bucket(emulator)
    with pytest.raises(oss2.exceptions.OssError) as info:
        bucket.put_object("users/42/b.txt", b"x", headers={"x-oss-callback": "%%%"})
    assert (info.value.status, info.value.code) == (400, "InvalidArgument")
    assert not bucket.object_exists("users/42/b.txt")
