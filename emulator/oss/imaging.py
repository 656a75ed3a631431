"""Image processing (OSS IMG) for GetObject with `x-oss-process=image/...` or `style/<name>`:
parsing the process, the limits on sources, decoding and encoding; the actions themselves are
emulator/oss/image_actions.py.

What it follows from Alibaba's IMG documentation:
- actions run in the order given, `image/<action>,<k>_<v>,.../<action>,...`; `info` stands alone;
- resize `m_lfit|mfit|fill|pad|fixed`, `w`, `h`, `l`, `s` in [1, 16384], `p` in [1, 1000],
  `limit_1` (the default: never enlarge), `color` (pad), w/h win over l/s;
- crop `w`, `h`, `x`, `y`, `g` (nw north ne west center east sw south se), clipped to the image;
- rotate [0, 360] clockwise; auto-orient 0/1 (EXIF Orientation); interlace 0/1 (progressive
  JPEG); quality `q` (relative to the source's JPEG quality) or `Q` (absolute) for JPEG/WebP;
  format jpg, png, webp, bmp, gif;
- limits: a source of at most 20 MB, 30,000 px a side and 250 million pixels; a result of at
  most 16,384 px a side and 16,777,216 pixels;
- errors in the OSS error XML: InvalidArgument, MissingArgument, ImageTooLarge (400),
  NoSuchStyle (404); actions of OSS this emulator lacks (watermark, blur, ...) are 400
  NotImplemented, as the emulator answers every feature it lacks.

Memory stays bounded: the source is at most 20 MB, its header is checked before any pixel is
decoded, a JPEG about to be shrunk is decoded at 1/2 to 1/8 scale (Image.draft), and at most
two sources are read and decoded at once however many requests arrive.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from emulator.oss.errors import OssError
from emulator.oss.image_actions import (
    MAX_SOURCE_SIDE,
    _crop,
    _int,
    _resize,
    _rotate,
    _single,
    invalid,
    jpeg_quality,
    plan_resize,
)

MAX_SOURCE_BYTES = 20 * 1024 * 1024
MAX_SOURCE_PIXELS = 250_000_000
STYLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# Pillow's own bomb check (89 million pixels by default) would refuse sources OSS accepts; it
# is raised to OSS's limit, which _open checks from the header before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = MAX_SOURCE_PIXELS

_DECODING = threading.BoundedSemaphore(2)
_ACTIONS = frozenset(
    ["resize", "crop", "rotate", "auto-orient", "format", "quality", "interlace", "info"]
)
# IMG actions that exist on OSS but not here.
_NOT_IMPLEMENTED = frozenset(
    [
        "watermark",
        "circle",
        "indexcrop",
        "rounded-corners",
        "blur",
        "bright",
        "sharpen",
        "contrast",
        "average-hue",
    ]
)
_SOURCE_FORMATS = {
    "JPEG": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tiff",
}
_OUTPUT = {  # OSS name -> (Pillow format, Content-Type)
    "jpg": ("JPEG", "image/jpeg"),
    "png": ("PNG", "image/png"),
    "webp": ("WEBP", "image/webp"),
    "bmp": ("BMP", "image/bmp"),
    "gif": ("GIF", "image/gif"),
    "tiff": ("TIFF", "image/tiff"),
}


@dataclass(frozen=True)
class Step:
    action: str
    params: dict[str, str]


@dataclass(frozen=True)
class Processed:
    content_type: str
    body: bytes


def source_too_large() -> OssError:
    return OssError(400, "ImageTooLarge", f"The source image exceeds {MAX_SOURCE_BYTES} bytes.")


def parse_process(text: str, styles: Mapping[str, str]) -> list[Step]:
    """The steps of an `x-oss-process` value; `style/<name>` is looked up in `styles`."""
    if text.startswith("style/"):
        name = text[len("style/") :]
        if name not in styles:
            raise OssError(404, "NoSuchStyle", "The specified style does not exist.")
        text = styles[name]
    kind, _, rest = text.partition("/")
    if kind != "image":
        if kind in ("video", "doc", "audio", "hls"):
            raise OssError(400, "NotImplemented", f"The emulator does not implement {kind}/.")
        raise invalid(f"Unknown process type {kind!r}: the emulator processes image/ only.")
    steps = []
    for part in rest.split("/"):
        if not part:
            continue
        name, *pairs = part.split(",")
        if name in _NOT_IMPLEMENTED:
            raise OssError(400, "NotImplemented", f"The emulator does not implement image/{name}.")
        if name not in _ACTIONS:
            raise invalid(f"Unknown image action {name!r}.")
        params: dict[str, str] = {}
        for pair in pairs:
            if not pair:
                continue
            key, sep, value = pair.partition("_")
            if not sep and name not in ("auto-orient", "interlace", "rotate", "format"):
                raise invalid(f"Malformed parameter {pair!r} of image/{name}.")
            params[key if sep else ""] = value if sep else key
        steps.append(Step(name, params))
    if not steps:
        raise OssError(400, "MissingArgument", "The process has no action.")
    if any(step.action == "info" for step in steps) and len(steps) > 1:
        raise invalid("image/info cannot be combined with other actions.")
    return steps


# --- processing ----------------------------------------------------------------------------------


def _open(data: bytes) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise _source_dimensions() from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise OssError(400, "BadRequest", "The object is not an image IMG can decode.") from None
    if im.format not in _SOURCE_FORMATS:
        raise OssError(400, "BadRequest", f"IMG does not process {im.format} images.")
    width, height = im.size
    if width > MAX_SOURCE_SIDE or height > MAX_SOURCE_SIDE or width * height > MAX_SOURCE_PIXELS:
        raise _source_dimensions()
    return im


def _source_dimensions() -> OssError:
    return OssError(
        400,
        "ImageTooLarge",
        f"The source image exceeds {MAX_SOURCE_SIDE} pixels a side or {MAX_SOURCE_PIXELS} pixels.",
    )


def _draft(im: Image.Image, steps: list[Step]) -> tuple[int, int] | None:
    """Decode a JPEG at the smallest scale the first resize still needs; returns the size the
    resize must be planned against (the undrafted one)."""
    if im.format != "JPEG":
        return None
    oriented = im.size
    for step in steps:
        if step.action == "auto-orient":
            if _single(step.params, 0, 1, "auto-orient") and im.getexif().get(274) in (5, 6, 7, 8):
                oriented = (im.height, im.width)
        elif step.action == "resize":
            plan = plan_resize(*oriented, step.params)
            if plan is None:
                return None
            wanted = plan.size if oriented == im.size else plan.size[::-1]
            original = im.size
            im.draft(im.mode, wanted)
            return original
        elif step.action not in ("format", "quality", "interlace"):
            return None
    return None


def process(read: Callable[[], bytes], steps: list[Step]) -> Processed:
    """Apply `steps` to the image `read()` returns (at most MAX_SOURCE_BYTES). The source is
    read only once this request's turn to decode has come, so waiting requests hold no bytes."""
    with _DECODING:
        data = read()
        if len(data) > MAX_SOURCE_BYTES:
            raise source_too_large()
        im = _open(data)
        if steps[0].action == "info":
            return Processed("application/json", info(im, len(data)))
        source_format = _SOURCE_FORMATS[im.format or ""]
        source_quality = jpeg_quality(im)
        exif_orientation = im.getexif().get(274)
        logical = _draft(im, steps)
        target = source_format
        quality: int | None = None
        progressive = False
        for step in steps:
            if step.action == "resize":
                # A drafted JPEG is planned against its full size, as OSS sees it.
                size, logical = logical or im.size, None
                plan = plan_resize(*size, step.params)
                if plan is not None:
                    im = _resize(im, plan)
            elif step.action == "auto-orient":
                if _single(step.params, 0, 1, "auto-orient") and exif_orientation not in (None, 1):
                    im = ImageOps.exif_transpose(im)
                    if logical is not None and exif_orientation in (5, 6, 7, 8):
                        logical = logical[::-1]
            elif step.action == "crop":
                im = _crop(im, step.params)
            elif step.action == "rotate":
                im = _rotate(im, _single(step.params, 0, 360, "rotate"))
            elif step.action == "interlace":
                progressive = bool(_single(step.params, 0, 1, "interlace"))
            elif step.action == "format":
                name = step.params.get("", "").lower()
                name = "jpg" if name == "jpeg" else name
                if name in ("heif", "heic", "avif", "jxl", "tiff"):
                    raise OssError(400, "NotImplemented", f"The emulator cannot write {name}.")
                if name not in _OUTPUT:
                    raise invalid("format takes one of jpg, png, webp, bmp, gif.")
                target = name
            elif step.action == "quality":
                relative = _int(step.params, "q", 1, 100)
                absolute = _int(step.params, "Q", 1, 100)
                if relative is None and absolute is None:
                    raise OssError(400, "MissingArgument", "image/quality needs q or Q.")
                if absolute is not None:
                    quality = min(absolute, source_quality or 100)
                else:
                    assert relative is not None
                    quality = max(1, round((source_quality or 100) * relative / 100))
        return Processed(_OUTPUT[target][1], _encode(im, target, quality, progressive))


def _encode(im: Image.Image, target: str, quality: int | None, progressive: bool) -> bytes:
    pillow_format = _OUTPUT[target][0]
    options: dict[str, object] = {}
    if target in ("jpg", "bmp"):
        if im.mode in ("RGBA", "LA", "P", "PA") and target == "jpg":
            # Transparent areas become white, as OSS renders them in a JPEG.
            rgba = im.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            im = flat
        elif im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
    elif target == "webp" and im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
    elif target == "png" and im.mode == "CMYK":
        im = im.convert("RGB")
    if target == "jpg":
        options = {"quality": quality or 85, "progressive": progressive, "optimize": False}
    elif target == "webp":
        options = {"quality": quality or 80, "method": 4}
    buffer = io.BytesIO()
    im.save(buffer, pillow_format, **options)
    return buffer.getvalue()


def info(im: Image.Image, file_size: int) -> bytes:
    """The JSON of image/info: every value a string under "value", EXIF tags by name."""
    exif = im.getexif()
    fields: dict[str, str] = {
        "FileSize": str(file_size),
        "Format": _SOURCE_FORMATS[im.format or ""],
        "FrameCount": str(getattr(im, "n_frames", 1)),
        "ImageHeight": str(im.height),
        "ImageWidth": str(im.width),
        "ResolutionUnit": "1",
        "XResolution": "1/1",
        "YResolution": "1/1",
    }
    if im.format != "PNG":  # OSS reads no EXIF from PNG
        for tag, value in exif.items():
            name = ExifTags.TAGS.get(tag)
            if name is None or isinstance(value, bytes | tuple | dict):
                continue
            if not isinstance(value, int) and hasattr(value, "numerator"):
                value = f"{value.numerator}/{value.denominator}"
            fields[name] = str(value)
    return json.dumps({name: {"value": fields[name]} for name in sorted(fields)}).encode()
