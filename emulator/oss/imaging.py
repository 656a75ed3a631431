"""Image processing (OSS IMG) for GetObject with `x-oss-process=image/...` or `style/<name>`.

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

MAX_SOURCE_BYTES = 20 * 1024 * 1024
MAX_SOURCE_SIDE = 30_000
MAX_SOURCE_PIXELS = 250_000_000
MAX_OUTPUT_SIDE = 16_384
MAX_OUTPUT_PIXELS = 16_777_216
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
_GRAVITIES = ("nw", "north", "ne", "west", "center", "east", "sw", "south", "se")
# The luminance table of the JPEG standard at quality 50, against which a source's quality is
# estimated (as libjpeg scales it).
_STD_LUMINANCE = (
    *(16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55),
    *(14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62),
    *(18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92),
    *(49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99),
)


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


def invalid(message: str) -> OssError:
    return OssError(400, "InvalidArgument", message)


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


def _int(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    if not text.isdigit() or not low <= int(text) <= high:
        raise invalid(f"The value of {name} must be an integer from {low} to {high}.")
    return int(text)


def _flag(params: Mapping[str, str], name: str, default: int) -> int:
    value = _int(params, name, 0, 1)
    return default if value is None else value


def _single(params: Mapping[str, str], low: int, high: int, action: str) -> int:
    """The one value of `auto-orient,1`, `rotate,90`, `interlace,1`."""
    text = params.get("", params.get("value"))
    if text is None or not text.isdigit() or not low <= int(text) <= high:
        raise invalid(f"image/{action} takes one integer from {low} to {high}.")
    return int(text)


# --- resize ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResizePlan:
    size: tuple[int, int]  # what the image is scaled to
    box: tuple[int, int] | None  # then cropped (fill) or padded (pad) to this
    pad_color: str = "FFFFFF"


def plan_resize(width: int, height: int, params: Mapping[str, str]) -> ResizePlan | None:
    """Where OSS resizes a width x height image; None when it keeps the size (limit_1)."""
    mode = params.get("m", "lfit")
    if mode not in ("lfit", "mfit", "fill", "pad", "fixed"):
        raise invalid(f"The resize mode m_{mode} is not one of lfit, mfit, fill, pad, fixed.")
    w = _int(params, "w", 1, MAX_OUTPUT_SIDE)
    h = _int(params, "h", 1, MAX_OUTPUT_SIDE)
    long_side = _int(params, "l", 1, MAX_OUTPUT_SIDE)
    short_side = _int(params, "s", 1, MAX_OUTPUT_SIDE)
    percent = _int(params, "p", 1, 1000)
    limit = _flag(params, "limit", 1)
    color = params.get("color", "FFFFFF")
    if not re.fullmatch(r"[0-9A-Fa-f]{6}", color):
        raise invalid("The value of color must be six hexadecimal digits, like FFFFFF.")
    box: tuple[int, int] | None = None
    if w is None and h is None and long_side is not None and short_side is not None:
        w, h = (long_side, short_side) if width >= height else (short_side, long_side)
    if w is not None and h is not None:
        if mode == "fixed":
            size = (w, h)
        else:
            ratio = (min if mode in ("lfit", "pad") else max)(w / width, h / height)
            size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
            box = (w, h) if mode in ("fill", "pad") else None
    elif w is not None or h is not None or long_side is not None or short_side is not None:
        if w is not None:
            ratio = w / width
        elif h is not None:
            ratio = h / height
        elif long_side is not None:
            ratio = long_side / max(width, height)
        else:
            assert short_side is not None
            ratio = short_side / min(width, height)
        side = w or h or long_side or short_side
        assert side is not None
        if mode in ("fill", "pad"):  # one side given: a square box
            return plan_resize(width, height, {**params, "w": str(side), "h": str(side)})
        size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    elif percent is not None:
        size = (max(1, round(width * percent / 100)), max(1, round(height * percent / 100)))
        limit = 0  # a percentage above 100 asks to enlarge
    else:
        raise OssError(400, "MissingArgument", "image/resize needs w, h, l, s or p.")
    if limit and (size[0] > width or size[1] > height):
        return None
    outer = box or size
    if max(outer[0], outer[1], size[0], size[1]) > MAX_OUTPUT_SIDE:
        raise invalid(f"The resized image would exceed {MAX_OUTPUT_SIDE} pixels a side.")
    if max(outer[0] * outer[1], size[0] * size[1]) > MAX_OUTPUT_PIXELS:
        raise invalid(f"The resized image would exceed {MAX_OUTPUT_PIXELS} pixels.")
    return ResizePlan(size=size, box=box, pad_color=color)


def _resize(im: Image.Image, plan: ResizePlan) -> Image.Image:
    if im.size != plan.size:
        im = im.resize(plan.size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if plan.box is None:
        return im
    bw, bh = plan.box
    if plan.box != plan.size and plan.size[0] >= bw and plan.size[1] >= bh:  # fill
        left, top = (plan.size[0] - bw) // 2, (plan.size[1] - bh) // 2
        return im.crop((left, top, left + bw, top + bh))
    if plan.box != plan.size:  # pad
        rgb = tuple(int(plan.pad_color[i : i + 2], 16) for i in (0, 2, 4))
        mode = "RGBA" if "A" in im.getbands() else "RGB"
        canvas = Image.new(mode, plan.box, rgb + ((255,) if mode == "RGBA" else ()))
        canvas.paste(im.convert(mode), ((bw - im.width) // 2, (bh - im.height) // 2))
        return canvas
    return im


# --- the other actions ---------------------------------------------------------------------------


def _crop(im: Image.Image, params: Mapping[str, str]) -> Image.Image:
    width, height = im.size
    w = _int(params, "w", 0, MAX_SOURCE_SIDE) or width
    h = _int(params, "h", 0, MAX_SOURCE_SIDE) or height
    x = _int(params, "x", 0, MAX_SOURCE_SIDE) or 0
    y = _int(params, "y", 0, MAX_SOURCE_SIDE) or 0
    gravity = params.get("g", "nw")
    if gravity not in _GRAVITIES:
        raise invalid(f"The crop gravity g_{gravity} is not one of {', '.join(_GRAVITIES)}.")
    column, row = _GRAVITIES.index(gravity) % 3, _GRAVITIES.index(gravity) // 3
    anchor_x = (0, (width - w) // 2, width - w)[column]
    anchor_y = (0, (height - h) // 2, height - h)[row]
    left, top = max(0, anchor_x) + x, max(0, anchor_y) + y
    if left >= width or top >= height:
        raise invalid("The crop origin lies outside the image.")
    return im.crop((left, top, min(width, left + w), min(height, top + h)))


def _rotate(im: Image.Image, angle: int) -> Image.Image:
    angle %= 360
    if angle == 0:
        return im
    quarter = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180}
    quarter[270] = Image.Transpose.ROTATE_90
    if angle in quarter:
        return im.transpose(quarter[angle])
    if im.mode not in ("RGB", "RGBA", "L"):
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    fill = (255, 255, 255, 0) if im.mode == "RGBA" else (255 if im.mode == "L" else "white")
    return im.rotate(-angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)


def jpeg_quality(im: Image.Image) -> int | None:
    """The quality a JPEG was saved at, estimated from its luminance table as libjpeg scales it."""
    tables = getattr(im, "quantization", None)
    if not tables or 0 not in tables:
        return None
    scale = sum(q * 100 / s for q, s in zip(tables[0], _STD_LUMINANCE, strict=False)) / 64
    quality = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return max(1, min(100, round(quality)))


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
