"""Uploads end to end: the app under live_server, the emulator as STS + OSS (it sends the
callbacks), oss2 as the app with the user's STS credentials from /api/sts/credentials/."""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import zlib
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import oss2
import pytest
import requests
from PIL import Image

from tests.helpers import bearer
from uploads.models import Upload

TIMEOUT = 10


def png_bytes(width: int, height: int) -> bytes:
    """A valid, tiny grayscale PNG of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def photo_jpeg(width: int, height: int, *, orientation: int = 1) -> bytes:
    """Left half red, right half blue, with an EXIF Orientation."""
    im = Image.new("RGB", (width, height), (255, 0, 0))
    im.paste((0, 0, 255), (width // 2, 0, width, height))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def root_bucket(settings) -> oss2.Bucket:
    auth = oss2.make_auth(settings.ALIBABA_ACCESS_KEY_ID, settings.ALIBABA_ACCESS_KEY_SECRET, "v4")
    return oss2.Bucket(auth, settings.OSS_ENDPOINT, settings.OSS_BUCKET, region=settings.OSS_REGION)


def stored_upload(settings, owner, *, name: str, data: bytes, content_type: str, **extra):
    """An upload row whose object really is in the (emulated) bucket."""
    key = f"users/{owner.public_id}/{name}"
    root_bucket(settings).put_object(key, data)
    return Upload.objects.create(
        owner=owner,
        bucket=settings.OSS_BUCKET,
        key=key,
        filename=name,
        size=len(data),
        content_type=content_type,
        **extra,
    )


@dataclass
class Live:
    url: str
    emulator: object
    settings: object
    tokens: dict = field(default_factory=dict)

    def api(self, method: str, path: str, user, **kwargs) -> requests.Response:
        # One token per user, minted on first use (minting writes to the database, which
        # worker threads of a test must not do: their connections would outlive the test).
        if user.pk not in self.tokens:
            self.tokens[user.pk] = bearer(user)
        headers = {**self.tokens[user.pk], **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=TIMEOUT, **kwargs)

    def ticket(self, user, *, filename="photo.png", size=100, content_type="image/png", **extra):
        response = self.api(
            "POST",
            "/api/uploads/tickets/",
            user,
            json={"filename": filename, "size": size, "content_type": content_type, **extra},
        )
        assert response.status_code == 201, response.text
        return response.json()

    def bucket(self, user) -> oss2.Bucket:
        """The app's own oss2 client: STS credentials for this user, V4, region from the server."""
        response = self.api("GET", "/api/sts/credentials/", user)
        assert response.status_code == 200, response.text
        creds = response.json()
        auth = oss2.StsAuth(
            creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"], "v4"
        )
        return oss2.Bucket(
            auth, creds["Endpoint"], creds["Bucket"], region=creds["Region"], connect_timeout=10
        )

    def root_bucket(self) -> oss2.Bucket:
        auth = oss2.make_auth(
            self.settings.ALIBABA_ACCESS_KEY_ID, self.settings.ALIBABA_ACCESS_KEY_SECRET, "v4"
        )
        return oss2.Bucket(
            auth,
            self.settings.OSS_ENDPOINT,
            self.settings.OSS_BUCKET,
            region=self.settings.OSS_REGION,
            connect_timeout=10,
        )

    def callback_url(self) -> str:
        return self.url + "/api/oss/callback/"

    def post_callback(
        self,
        body: bytes,
        *,
        signer=None,
        key_url: str | None = None,
        signed_path: str = "/api/oss/callback/",
        signed_query: str = "",
        path: str = "/api/oss/callback/",
        query: str = "",
        body_sent: bytes | None = None,
        content_type: str = "application/x-www-form-urlencoded",
    ) -> requests.Response:
        """POST a callback as OSS does, signed over (signed_path, signed_query, body); what is
        actually sent may differ (path, query, body_sent) to model tampering in transit."""
        signer = signer or self.emulator.signer
        key_url = key_url or self.emulator.public_key_url
        to_sign = signed_path + ("?" + signed_query if signed_query else "") + "\n"
        signature = signer.sign(to_sign.encode() + body)
        sent = body if body_sent is None else body_sent
        return requests.post(
            self.url + path + ("?" + query if query else ""),
            data=sent,
            headers={
                "authorization": base64.b64encode(signature).decode(),
                "x-oss-pub-key-url": base64.b64encode(key_url.encode()).decode(),
                "content-type": content_type,
                "content-md5": base64.b64encode(hashlib.md5(sent).digest()).decode(),  # noqa: S324
                "x-oss-bucket": self.settings.OSS_BUCKET,
                "user-agent": "aliyun-oss-callback",
            },
            timeout=TIMEOUT,
        )


def callback_body(issued: dict, *, etag: str, size: int, mime: str = "image/png", **extra) -> bytes:
    """The body OSS renders from the ticket's template (form-encoded)."""
    fields = {
        "bucket": issued["bucket"],
        "object": issued["key"],
        "etag": etag,
        "size": str(size),
        "mimeType": mime,
        "height": "",
        "width": "",
        "format": "",
        "crc64": "1",
        "reqId": "REQ1",
        "operation": "PutObject",
        "ticket": issued["callback"]["callbackVar"]["x:ticket"],
    }
    fields.update(extra)
    return urlencode(fields).encode()


@pytest.fixture
def live(alibaba, live_server, settings) -> Live:
    settings.OSS_CALLBACK_URL = live_server.url + "/api/oss/callback/"
    # live_server answers on localhost; the emulator's key URL prefix is set by `alibaba`.
    assert urlsplit(live_server.url).hostname in settings.ALLOWED_HOSTS
    return Live(url=live_server.url, emulator=alibaba, settings=settings)
