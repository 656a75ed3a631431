"""What an upload may be: allowed content types, the key's extension, a clean file name.

Pure rules, no I/O. Browsers run scripts in some types when an object is opened from a download
URL (HTML, SVG, any XML document with an XHTML namespace, JavaScript): those are never allowed by
a wildcard such as ``image/*``; a deployment that wants them lists them exactly in
UPLOAD_ALLOWED_CONTENT_TYPES. The key's extension is chosen from the content type, never from the
file name, so tools that guess a type from the extension guess the type that was checked.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from functools import cache

from django.conf import settings

# Types a browser renders as an active document (scripts run) when opened directly.
SCRIPTABLE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "application/xml",
        "text/xml",
        "text/xsl",
        "application/xslt+xml",
        "image/svg+xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-javascript",
        "text/javascript",
        "text/ecmascript",
        "text/jscript",
        "application/x-shockwave-flash",
        "application/pdf+html",
        "multipart/x-mixed-replace",
    }
)

# One extension per type the standard table lacks or gives oddly; the rest come from Python's
# built-in table (never the host's /etc/mime.types, so every server picks the same key).
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/heif": ".heif",
    "image/heic": ".heic",
    "image/avif": ".avif",
    "audio/mp4": ".m4a",
    "audio/aac": ".aac",
    "audio/ogg": ".ogg",
    "audio/wav": ".wav",
    "video/webm": ".webm",
    "text/plain": ".txt",
    "application/octet-stream": "",
}
_EXTENSION = re.compile(r"^\.[a-z0-9]{1,16}$")
# Bidirectional overrides, embeddings and isolates, and the invisible marks: they make
# "evil\u202egnp.exe" display as "evilexe.png".
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _base(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def content_type_scriptable(content_type: str) -> bool:
    """Whether a browser may run scripts in a document of this type (any XML flavour too)."""
    base = _base(content_type)
    return base in SCRIPTABLE_TYPES or base.endswith("+xml")


def content_type_allowed(content_type: str) -> bool:
    """Against UPLOAD_ALLOWED_CONTENT_TYPES: exact types or wildcards like ``image/*``.
    A wildcard never allows a scriptable type; only an exact entry does."""
    wanted = _base(content_type)
    scriptable = content_type_scriptable(wanted)
    for allowed in settings.UPLOAD_ALLOWED_CONTENT_TYPES:
        allowed = allowed.strip().lower()
        if allowed == wanted:
            return True
        if scriptable:
            continue
        if allowed in ("*", "*/*"):
            return True
        if allowed.endswith("/*") and wanted.startswith(allowed[:-1]):
            return True
    return False


@cache
def _table() -> mimetypes.MimeTypes:
    return mimetypes.MimeTypes()


def content_type_extension(content_type: str) -> str:
    """The key's extension for a content type (lower case, with the dot), or "" if none."""
    base = _base(content_type)
    ext = _EXTENSIONS[base] if base in _EXTENSIONS else (_table().guess_extension(base) or "")
    return ext if _EXTENSION.match(ext) else ""


def filename_clean(name: str) -> str:
    """The name as given, less control characters (C0, DEL, C1) and bidirectional controls."""
    return "".join(c for c in name if c not in _BIDI and unicodedata.category(c) != "Cc").strip()
