"""What OSS makes of the callback headers: parsing them into a CallbackSpec and rendering the
body from the object's facts (the rules are in emulator/callbacks/__init__.py)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import quote, urlsplit

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
