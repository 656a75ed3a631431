"""The IMG actions that change pixels or say how to encode them: resize (plan_resize and its
modes), crop, rotate, and the source's JPEG quality; with the parameter parsing they share.
The process they run in, and its limits on sources, is emulator/oss/imaging.py."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import Image

from emulator.oss.errors import OssError

MAX_SOURCE_SIDE = 30_000  # crop offsets and sizes range over a source's sides
MAX_OUTPUT_SIDE = 16_384
MAX_OUTPUT_PIXELS = 16_777_216

_GRAVITIES = ("nw", "north", "ne", "west", "center", "east", "sw", "south", "se")
# The luminance table of the JPEG standard at quality 50, against which a source's quality is
# estimated (as libjpeg scales it).
_STD_LUMINANCE = (
    *(16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55),
    *(14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62),
    *(18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92),
    *(49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99),
)


def invalid(message: str) -> OssError:
    return OssError(400, "InvalidArgument", message)


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
