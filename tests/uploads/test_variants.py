"""Image variants: signed x-oss-process URLs in GET /api/uploads/ and the detail.

The objects are in the session's emulator; every variant URL is fetched over HTTP and decoded.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

import oss2
import pytest
import requests
from django.conf import settings as django_settings
from PIL import Image

from emulator import Emulator, EmulatorConfig
from tests.factories import UserFactory
from tests.uploads.conftest import photo_jpeg, stored_upload
from uploads import oss
from uploads.models import Upload

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10


def fetch_image(url: str) -> Image.Image:
    response = requests.get(url, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


@pytest.fixture(params=["v1", "v4"])
def signature_version(request, settings, alibaba) -> str:
    settings.OSS_SIGNATURE_VERSION = request.param
    return request.param


@pytest.mark.django_db
def test_list_and_detail_carry_variants_of_the_promised_size_and_format(
    auth_client, user, settings, signature_version
):
    # Stored sideways (EXIF 6): 2000 x 1000 as stored, 1000 x 2000 upright.
    photo = stored_upload(
        settings,
        user,
        name="photo.jpg",
        data=photo_jpeg(2000, 1000, orientation=6),
        content_type="image/jpeg",
    )
    notes = stored_upload(
        settings, user, name="notes.txt", data=b"hello", content_type="text/plain"
    )
    items = {item["id"]: item for item in auth_client.get("/api/uploads/").json()["results"]}
    assert items[notes.pk]["variants"] == {}
    variants = items[photo.pk]["variants"]
    assert set(variants) == {"thumbnail", "preview"}
    thumbnail = fetch_image(variants["thumbnail"]["url"])
    assert (thumbnail.format, thumbnail.size) == ("WEBP", (128, 256))
    # EXIF orientation applied: the stored left half (red) is now the top.
    assert thumbnail.convert("RGB").getpixel((64, 10))[0] > 200
    assert thumbnail.convert("RGB").getpixel((64, 246))[2] > 200
    preview = fetch_image(variants["preview"]["url"])
    assert (preview.format, preview.size) == ("WEBP", (640, 1280))
    detail = auth_client.get(f"/api/uploads/{photo.pk}/").json()
    assert set(detail["variants"]) == {"thumbnail", "preview"}
    assert fetch_image(detail["variants"]["thumbnail"]["url"]).size == (128, 256)
    assert detail["variants"]["thumbnail"]["expires_at"]


@pytest.mark.django_db
def test_a_tampered_process_fails_the_signature(auth_client, user, settings, signature_version):
    photo = stored_upload(
        settings, user, name="p.jpg", data=photo_jpeg(600, 300), content_type="image/jpeg"
    )
    url = auth_client.get(f"/api/uploads/{photo.pk}/").json()["variants"]["thumbnail"]["url"]
    assert "x-oss-process=" in url
    for tampered in (
        url.replace("w_256", "w_2560"),
        url.replace(quote("/format,webp", safe=""), ""),
        url.replace("x-oss-process=", "x-oss-processed="),  # the original, unprocessed
    ):
        response = requests.get(tampered, timeout=TIMEOUT)
        assert response.status_code == 403, tampered
        assert "<Code>SignatureDoesNotMatch</Code>" in response.text


@pytest.mark.django_db
def test_another_users_variants_are_refused(auth_client, user, settings, signature_version):
    other = UserFactory()
    theirs = stored_upload(
        settings, other, name="secret.jpg", data=photo_jpeg(300, 300), content_type="image/jpeg"
    )
    mine = stored_upload(
        settings, user, name="mine.jpg", data=photo_jpeg(300, 300), content_type="image/jpeg"
    )
    listed = [item["id"] for item in auth_client.get("/api/uploads/").json()["results"]]
    assert listed == [mine.pk]
    assert auth_client.get(f"/api/uploads/{theirs.pk}/").status_code == 404
    # My own signed URL pointed at their object: the signature covers the key.
    url = auth_client.get(f"/api/uploads/{mine.pk}/").json()["variants"]["thumbnail"]["url"]
    stolen = url.replace(quote(mine.key, safe="/"), quote(theirs.key, safe="/"))
    assert stolen != url
    assert requests.get(stolen, timeout=TIMEOUT).status_code == 403
    # The app's own STS credentials cannot process their object either.
    creds = auth_client.get("/api/sts/credentials/").json()
    auth = oss2.StsAuth(
        creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"], "v4"
    )
    bucket = oss2.Bucket(auth, creds["Endpoint"], creds["Bucket"], region=creds["Region"])
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket.get_object(theirs.key, process="image/resize,w_64")
    assert bucket.get_object(mine.key, process="image/resize,w_64").read()


@pytest.mark.django_db
def test_only_stored_images_get_variants(auth_client, user, settings, alibaba):
    missing = stored_upload(
        settings,
        user,
        name="gone.png",
        data=b"x",
        content_type="image/png",
        status=Upload.Status.MISSING,
    )
    sniffed = stored_upload(
        settings,
        user,
        name="unnamed",
        data=photo_jpeg(64, 64),
        content_type="application/octet-stream",
        image_format="jpg",  # what OSS's imageInfo said at the callback
    )
    items = {item["id"]: item for item in auth_client.get("/api/uploads/").json()["results"]}
    assert items[missing.pk]["variants"] == {}
    assert fetch_image(items[sniffed.pk]["variants"]["thumbnail"]["url"]).size == (64, 64)


@pytest.mark.django_db
def test_variants_can_use_bucket_styles(auth_client, user, settings):
    styles = {"tile": "image/resize,m_fill,w_100,h_100/format,png"}
    with Emulator(EmulatorConfig(port=0, data_dir=None, image_styles=styles)) as emu:
        settings.OSS_ENDPOINT = settings.OSS_PUBLIC_ENDPOINT = emu.endpoint
        settings.IMAGE_VARIANTS = {"tile": "style/tile"}
        photo = stored_upload(
            settings, user, name="s.jpg", data=photo_jpeg(400, 200), content_type="image/jpeg"
        )
        variants = auth_client.get(f"/api/uploads/{photo.pk}/").json()["variants"]
        assert set(variants) == {"tile"}
        tile = fetch_image(variants["tile"]["url"])
        assert (tile.format, tile.size) == ("PNG", (100, 100))
        settings.IMAGE_VARIANTS = {}
        assert auth_client.get(f"/api/uploads/{photo.pk}/").json()["variants"] == {}


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_signed_urls_are_the_ones_oss2_makes(settings, version):
    """The page's signer computes what oss2's sign_url computes (within the same second)."""
    settings.OSS_SIGNATURE_VERSION = version
    key = "users/ab c/ü+x.jpg"
    process = django_settings.IMAGE_VARIANTS["thumbnail"]
    client = oss2.Bucket(
        oss2.make_auth(settings.ALIBABA_ACCESS_KEY_ID, settings.ALIBABA_ACCESS_KEY_SECRET, version),
        settings.OSS_PUBLIC_ENDPOINT,
        settings.OSS_BUCKET,
        region=settings.OSS_REGION,
    )
    pairs = []
    for _ in range(3):  # a second may tick between the two
        expected = client.sign_url(
            "GET", key, 300, params={"x-oss-process": process}, slash_safe=True
        )
        signed = oss.oss_sign_process_urls(keys=[key], processes={"t": process}, expires_in=300)
        pairs.append((signed[key].urls["t"], expected))
        if pairs[-1][0] == expected:
            break
    assert pairs[-1][0] == pairs[-1][1], pairs


@pytest.mark.parametrize(
    "value",
    [
        '{"thumbnail": "resize,w_10"}',
        '{"Thumb nail": "image/resize,w_10"}',
        '["image/resize,w_10"]',
        '{"t": "image/resize,w_10&Signature=x"}',
    ],
)
def test_bad_image_variants_refuse_to_start(value):
    env = {**os.environ, "APP_ENV": "local", "IMAGE_VARIANTS": value}
    result = subprocess.run(
        [sys.executable, "-c", "import appserver.settings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "IMAGE_VARIANTS" in result.stderr


@pytest.mark.django_db
def test_variants_behind_a_cdn_domain_keep_the_oss_signature(
    auth_client, user, settings, signature_version
):
    """IMAGE_VARIANT_ENDPOINT names a CDN serving the bucket at its root; the CDN forwards the
    request to OSS, which checks the same signature. Here the "CDN" is the emulator's own
    virtual-host addressing (Host: <bucket>.localhost)."""
    port = urlsplit(settings.OSS_ENDPOINT).port
    cdn_host = f"{settings.OSS_BUCKET}.localhost:{port}"
    settings.IMAGE_VARIANT_ENDPOINT = f"http://{cdn_host}/"
    photo = stored_upload(
        settings, user, name="c.jpg", data=photo_jpeg(512, 512), content_type="image/jpeg"
    )
    url = auth_client.get(f"/api/uploads/{photo.pk}/").json()["variants"]["thumbnail"]["url"]
    parts = urlsplit(url)
    assert parts.netloc == cdn_host
    assert parts.path == "/" + quote(photo.key, safe="/")
    # What the CDN sends its origin: the same path and query, to the bucket's host.
    response = requests.get(
        f"http://127.0.0.1:{port}{parts.path}?{parts.query}",
        headers={"Host": cdn_host},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(response.content)).size == (256, 256)
