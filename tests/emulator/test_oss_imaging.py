"""Image processing (x-oss-process) through oss2: get_object(process=...) and signed URLs.

Expected sizes come from Alibaba's IMG documentation (its 200x100 resize example and the
parameter rules); every processed body is decoded with Pillow to check size and format.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator

import oss2
import pytest
import requests
from PIL import Image

from emulator import Emulator, EmulatorConfig
from emulator.__main__ import build_config
from emulator.config import DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET
from tests.emulator.conftest import BUCKET, REGION, assume_role, sts_bucket, user_policy

STYLES = {"thumb": "image/auto-orient,1/resize,m_lfit,w_64,h_64/format,webp"}


@pytest.fixture(scope="module")
def img_emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0, data_dir=None, image_styles=STYLES)) as emulator:
        yield emulator


def root(emu: Emulator, auth_version: str = "v4") -> oss2.Bucket:
    auth = oss2.make_auth(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET, auth_version)
    return oss2.Bucket(auth, emu.endpoint, BUCKET, region=REGION)


def encode(im: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def two_colours(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: shows where the image's left edge went."""
    im = Image.new("RGB", (width, height), (255, 0, 0))
    im.paste((0, 0, 255), (width // 2, 0, width, height))
    return im


@pytest.fixture(scope="module")
def objects(img_emu: Emulator) -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    made = {
        "img/200x100.png": encode(Image.new("RGB", (200, 100), (10, 200, 10)), "PNG"),
        "img/rotated.jpg": encode(two_colours(40, 20), "JPEG", quality=95, exif=exif),
        "img/12mp.jpg": encode(two_colours(4000, 3000), "JPEG", quality=90),
        "img/alpha.png": encode(Image.new("RGBA", (50, 50), (0, 0, 0, 0)), "PNG"),
        "img/not-an-image.jpg": b"plain text, not pixels",
    }
    bucket = root(img_emu)
    for key, data in made.items():
        bucket.put_object(key, data)
    return made


def fetch(bucket: oss2.Bucket, key: str, process: str) -> tuple[Image.Image, str]:
    result = bucket.get_object(key, process=process)
    body = result.read()
    return Image.open(io.BytesIO(body)), result.headers["Content-Type"]


@pytest.mark.parametrize(
    ("process", "size"),
    [
        # The documentation's example: a 200 x 100 source, w=150, h=80, each mode.
        ("image/resize,m_lfit,w_150,h_80", (150, 75)),
        ("image/resize,m_mfit,w_150,h_80", (160, 80)),
        ("image/resize,m_fill,w_150,h_80", (150, 80)),
        ("image/resize,m_pad,w_150,h_80", (150, 80)),
        ("image/resize,m_fixed,w_150,h_80", (150, 80)),
        ("image/resize,w_50", (50, 25)),
        ("image/resize,h_20", (40, 20)),
        ("image/resize,l_100", (100, 50)),
        ("image/resize,s_20", (40, 20)),
        ("image/resize,l_100,s_20", (40, 20)),  # lfit into the 100 x 20 box
        ("image/resize,p_50", (100, 50)),
        ("image/resize,m_fill,w_30", (30, 30)),  # one side of fill/pad: a square
        ("image/resize,w_400", (200, 100)),  # limit_1 (default): never enlarged
        ("image/resize,w_400,limit_0", (400, 200)),
        ("image/crop,w_50,h_40", (50, 40)),
        ("image/crop,w_500,h_40,x_180", (20, 40)),  # clipped to the image
        ("image/crop,w_60,h_60,g_se", (60, 60)),
        ("image/rotate,90", (100, 200)),
        ("image/rotate,180", (200, 100)),
        ("image/crop,w_100,h_100/resize,w_10/rotate,270", (10, 10)),  # applied in order
    ],
)
def test_geometry(img_emu, objects, process, size):
    im, content_type = fetch(root(img_emu), "img/200x100.png", process)
    assert (im.size, im.format, content_type) == (size, "PNG", "image/png")


def test_fill_keeps_the_centre_and_pad_fills_with_the_colour(img_emu, objects):
    bucket = root(img_emu)
    padded, _ = fetch(bucket, "img/200x100.png", "image/resize,m_pad,w_100,h_100,color_FF0000")
    assert padded.getpixel((50, 5)) == (255, 0, 0)  # above the image: the pad colour
    assert padded.getpixel((50, 50)) == (10, 200, 10)
    filled, _ = fetch(bucket, "img/rotated.jpg", "image/resize,m_fill,w_10,h_10")
    assert filled.size == (10, 10)


@pytest.mark.parametrize(
    ("process", "fmt", "content_type"),
    [
        ("image/format,jpg", "JPEG", "image/jpeg"),
        ("image/format,png", "PNG", "image/png"),
        ("image/format,webp", "WEBP", "image/webp"),
        ("image/format,bmp", "BMP", "image/bmp"),
        ("image/resize,w_10/format,webp/quality,Q_50", "WEBP", "image/webp"),
    ],
)
def test_format(img_emu, objects, process, fmt, content_type):
    im, sent_type = fetch(root(img_emu), "img/200x100.png", process)
    assert (im.format, sent_type) == (fmt, content_type)


def test_transparent_png_to_jpg_is_white(img_emu, objects):
    im, _ = fetch(root(img_emu), "img/alpha.png", "image/format,jpg")
    assert im.mode == "RGB"
    assert all(channel > 250 for channel in im.getpixel((25, 25)))


def test_auto_orient_applies_the_exif_orientation(img_emu, objects):
    bucket = root(img_emu)
    raw, _ = fetch(bucket, "img/rotated.jpg", "image/format,png")
    assert raw.size == (40, 20)  # OSS rotates only when asked
    upright, _ = fetch(bucket, "img/rotated.jpg", "image/auto-orient,1/format,png")
    assert upright.size == (20, 40)
    # Rotated 90 degrees clockwise: the stored left half (red) is now on top.
    red, _, blue = upright.getpixel((10, 5))
    assert red > 200 and blue < 60
    red, _, blue = upright.getpixel((10, 35))
    assert blue > 200 and red < 60


def test_style_and_drafted_jpeg_resize(img_emu, objects):
    bucket = root(img_emu)
    im, content_type = fetch(bucket, "img/rotated.jpg", "style/thumb")
    # Upright (20 x 40), and not enlarged to 64 px: limit_1 is the default.
    assert (im.size, im.format, content_type) == ((20, 40), "WEBP", "image/webp")
    # A 12-megapixel JPEG decoded at reduced scale still comes out at the exact size asked.
    im, _ = fetch(bucket, "img/12mp.jpg", "image/resize,w_256")
    assert im.size == (256, 192)
    assert im.getpixel((10, 96))[0] > 200 and im.getpixel((250, 96))[2] > 200


def test_quality_and_interlace(img_emu, objects):
    bucket = root(img_emu)
    high = bucket.get_object("img/12mp.jpg", process="image/resize,w_800/quality,Q_95").read()
    low = bucket.get_object("img/12mp.jpg", process="image/resize,w_800/quality,Q_20").read()
    relative = bucket.get_object("img/12mp.jpg", process="image/resize,w_800/quality,q_30").read()
    assert len(low) < len(high)
    assert len(relative) < len(high)
    plain, _ = fetch(bucket, "img/12mp.jpg", "image/resize,w_100")
    progressive, _ = fetch(bucket, "img/12mp.jpg", "image/resize,w_100/interlace,1")
    assert not plain.info.get("progressive")
    assert progressive.info.get("progressive")


def test_info_returns_the_json_oss_returns(img_emu, objects):
    result = root(img_emu).get_object("img/200x100.png", process="image/info")
    assert result.headers["Content-Type"] == "application/json"
    assert json.loads(result.read()) == {
        "FileSize": {"value": str(len(objects["img/200x100.png"]))},
        "Format": {"value": "png"},
        "FrameCount": {"value": "1"},
        "ImageHeight": {"value": "100"},
        "ImageWidth": {"value": "200"},
        "ResolutionUnit": {"value": "1"},
        "XResolution": {"value": "1/1"},
        "YResolution": {"value": "1/1"},
    }
    with_exif = json.loads(root(img_emu).get_object("img/rotated.jpg", process="image/info").read())
    assert with_exif["Orientation"] == {"value": "6"}
    assert with_exif["Format"] == {"value": "jpg"}


def test_processed_bodies_carry_no_checksum_of_the_original(img_emu, objects):
    # oss2 checks a body against x-oss-hash-crc64ecma when it is sent: a derived image has none.
    bucket = oss2.Bucket(
        root(img_emu).auth, img_emu.endpoint, BUCKET, region=REGION, enable_crc=True
    )
    result = bucket.get_object("img/200x100.png", process="image/resize,w_10")
    assert result.read()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "x-oss-hash-crc64ecma" not in result.headers
    assert "ETag" not in result.headers


def big_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height; no pixel data worth decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))


@pytest.mark.parametrize(
    ("process", "status", "code"),
    [
        ("image/watermark,text_aGVsbG8", 400, "NotImplemented"),
        ("image/blur,r_3,s_2", 400, "NotImplemented"),
        ("video/snapshot,t_1000", 400, "NotImplemented"),
        ("image/sepia", 400, "InvalidArgument"),
        ("text/whatever", 400, "InvalidArgument"),
        ("image/resize,m_stretch,w_10", 400, "InvalidArgument"),
        ("image/resize,w_0", 400, "InvalidArgument"),
        ("image/resize,w_16385", 400, "InvalidArgument"),
        ("image/resize,w_abc", 400, "InvalidArgument"),
        ("image/resize,w_10000,limit_0", 400, "InvalidArgument"),  # over 16,777,216 pixels
        ("image/resize,limit_0", 400, "MissingArgument"),
        ("image/resize,w_10,color_red", 400, "InvalidArgument"),
        ("image/crop,x_500", 400, "InvalidArgument"),
        ("image/crop,w_10,g_middle", 400, "InvalidArgument"),
        ("image/rotate,361", 400, "InvalidArgument"),
        ("image/format,heic", 400, "NotImplemented"),
        ("image/format,svg", 400, "InvalidArgument"),
        ("image/quality,q_0", 400, "InvalidArgument"),
        ("image/quality", 400, "MissingArgument"),
        ("image/auto-orient,2", 400, "InvalidArgument"),
        ("image/resize,w_10/info", 400, "InvalidArgument"),
        ("image/", 400, "MissingArgument"),
        ("style/missing", 404, "NoSuchStyle"),
    ],
)
def test_errors_have_the_oss_shape(img_emu, objects, process, status, code):
    with pytest.raises(oss2.exceptions.OssError) as caught:
        root(img_emu).get_object("img/200x100.png", process=process)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert caught.value.request_id


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_sources_beyond_the_limits(img_emu, objects):
    bucket = root(img_emu)
    bucket.put_object("img/wide.png", big_png_header(30_001, 1))
    bucket.put_object("img/huge.png", big_png_header(20_000, 20_000))  # 400 million pixels
    bucket.put_object("img/heavy.jpg", objects["img/12mp.jpg"] + b"\0" * (20 * 1024 * 1024))
    for key in ("img/wide.png", "img/huge.png", "img/heavy.jpg"):
        with pytest.raises(oss2.exceptions.OssError) as caught:
            bucket.get_object(key, process="image/resize,w_10")
        assert (caught.value.status, caught.value.code) == (400, "ImageTooLarge")
    with pytest.raises(oss2.exceptions.OssError) as caught:
        bucket.get_object("img/not-an-image.jpg", process="image/resize,w_10")
    assert (caught.value.status, caught.value.code) == (400, "BadRequest")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object("img/none.png", process="image/resize,w_10")


def test_post_with_a_process_is_not_implemented(img_emu, objects):
    with pytest.raises(oss2.exceptions.OssError) as caught:
        root(img_emu).process_object("img/200x100.png", "image/resize,w_10|sys/saveas,o_eA")
    assert (caught.value.status, caught.value.code) == (400, "NotImplemented")


@pytest.mark.parametrize("auth_version", ["v1", "v4"])
def test_signed_urls_cover_the_process(img_emu, objects, auth_version):
    url = root(img_emu, auth_version).sign_url(
        "GET", "img/200x100.png", 60, params={"x-oss-process": "image/resize,w_20"}
    )
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (20, 10)
    tampered = requests.get(url.replace("w_20", "w_200"), timeout=10)
    assert tampered.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in tampered.text
    dropped = requests.get(url.replace("x-oss-process=image%2Fresize%2Cw_20", ""), timeout=10)
    assert dropped.status_code == 403


@pytest.mark.parametrize("auth_version", ["v1", "v4"])
def test_processing_needs_read_permission_on_the_object(img_emu, objects, auth_version):
    bucket = root(img_emu)
    bucket.put_object("users/bob/p.png", objects["img/200x100.png"])
    bucket.put_object("users/alice/p.png", objects["img/200x100.png"])
    alice = sts_bucket(img_emu, assume_role(img_emu, policy=user_policy("alice")), auth_version)
    own, _ = fetch(alice, "users/alice/p.png", "image/resize,w_20")
    assert own.size == (20, 10)
    with pytest.raises(oss2.exceptions.AccessDenied):
        alice.get_object("users/bob/p.png", process="image/resize,w_20")
    url = alice.sign_url(
        "GET", "users/bob/p.png", 60, params={"x-oss-process": "image/resize,w_20"}
    )
    assert requests.get(url, timeout=10).status_code == 403


def test_styles_are_configured_at_start_and_checked():
    config = build_config(["--memory", "--image-style", "t=image/resize,w_10/format,webp"])
    assert config.image_styles == {"t": "image/resize,w_10/format,webp"}
    for styles in ({"t": "image/sepia"}, {"bad name": "image/resize,w_1"}, {"t": "style/t"}):
        with pytest.raises(ValueError):
            Emulator(EmulatorConfig(port=0, data_dir=None, image_styles=styles))
