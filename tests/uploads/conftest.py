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

    def upload_unheard(
        self, user, data: bytes, *, declared: int | None = None, content_type="text/plain"
    ) -> dict:
        """Upload with a ticket whose callback fails (OSS answers 203 CallbackFailed): the
        object is stored and nothing is recorded. Returns the ticket."""
        callback_url = self.settings.OSS_CALLBACK_URL
        self.settings.OSS_CALLBACK_URL = "http://127.0.0.1:9/api/oss/callback/"  # nobody there
        try:
            size = len(data) if declared is None else declared
            ticket = self.ticket(user, filename="n.txt", size=size, content_type=content_type)
        finally:
            self.settings.OSS_CALLBACK_URL = callback_url
        try:
            status = (
                self.bucket(user)
                .put_object(
                    ticket["key"], data, headers={**ticket["headers"], "Content-Type": content_type}
                )
                .status
            )
        except oss2.exceptions.OssError as exc:
            status = exc.status
        assert status == 203
        return ticket

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


def assert_store_agrees(live: Live, user) -> None:
    """The promise, for one user: every object under their prefix is an active row with the
    same size and ETag, every active row has its object, and usage is exactly the recorded
    sizes plus the open reservations, within the quota."""
    from uploads.models import StorageUsage, Upload, UploadTicket
    from uploads.selectors import usage_limits

    prefix = f"users/{user.public_id}/"
    stored = {
        o.key: (o.size, o.etag.strip('"').upper())
        for o in oss2.ObjectIterator(live.root_bucket(), prefix=prefix)
    }
    active = Upload.objects.filter(owner=user, status=Upload.Status.ACTIVE)
    recorded = {u.key: (u.size, u.etag) for u in active}
    assert stored == recorded
    issued = UploadTicket.objects.filter(owner=user, status=UploadTicket.Status.ISSUED)
    usage = StorageUsage.objects.filter(user=user).first() or StorageUsage(user=user)
    assert (usage.bytes_used, usage.objects_used) == (
        sum(size for size, _ in recorded.values()),
        len(recorded),
    )
    assert (usage.bytes_reserved, usage.objects_reserved) == (
        sum(t.reserved_bytes for t in issued),
        len(issued),
    )
    max_bytes, max_objects = usage_limits(usage=usage)
    assert usage.bytes_used + usage.bytes_reserved <= max_bytes
    assert usage.objects_used + usage.objects_reserved <= max_objects
