"""Uploads (uploads/): sizes, types and quotas, the derived image variants, and how upload
callbacks are trusted (the ticket's HMAC, the pinned callback keys, the HEAD check)."""

from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured

from appserver.conf.environment import BASE_DIR, env

# --- Upload limits and quotas (uploads/) ------------------------------------------------------
UPLOAD_MAX_SIZE = env.int("UPLOAD_MAX_SIZE", default=1024**3)  # bytes, per object
UPLOAD_ALLOWED_CONTENT_TYPES = env.list(
    "UPLOAD_ALLOWED_CONTENT_TYPES",
    default=["image/*", "video/*", "audio/*", "application/pdf", "text/plain"],
)
UPLOAD_TICKET_TTL_SECONDS = env.int("UPLOAD_TICKET_TTL_SECONDS", default=3600)
UPLOAD_QUOTA_BYTES = env.int("UPLOAD_QUOTA_BYTES", default=5 * 1024**3)
UPLOAD_QUOTA_OBJECTS = env.int("UPLOAD_QUOTA_OBJECTS", default=10000)
DOWNLOAD_URL_TTL_SECONDS = env.int("DOWNLOAD_URL_TTL_SECONDS", default=300)
# Derived images listed with each image upload: name -> OSS IMG process ("image/...") or bucket
# style ("style/<name>"), as JSON. Each becomes a presigned URL in `variants`; {} turns them off.
IMAGE_VARIANTS = env.json(
    "IMAGE_VARIANTS",
    default={
        "thumbnail": "image/auto-orient,1/resize,m_lfit,w_256,h_256/format,webp",
        "preview": "image/auto-orient,1/resize,m_lfit,w_1280,h_1280/format,webp",
    },
)
if not isinstance(IMAGE_VARIANTS, dict) or not all(
    isinstance(name, str)
    and re.fullmatch(r"[a-z0-9_-]{1,32}", name)
    and isinstance(process, str)
    and re.fullmatch(r"(image/|style/)[^\s&#]{1,1000}", process)
    for name, process in IMAGE_VARIANTS.items()
):
    raise ImproperlyConfigured(
        'IMAGE_VARIANTS: a JSON object like {"thumbnail": "image/resize,w_256/format,webp"}, '
        "names of 1-32 lowercase letters, digits, - or _, processes starting image/ or style/."
    )
IMAGE_VARIANT_URL_TTL_SECONDS = env.int("IMAGE_VARIANT_URL_TTL_SECONDS", default=300)
# Where variant URLs point, when not OSS_PUBLIC_ENDPOINT: a CDN domain whose origin is the bucket.
IMAGE_VARIANT_ENDPOINT = env.str("IMAGE_VARIANT_ENDPOINT", default="")
# Signs the x:ticket callback variable; empty derives a key from SECRET_KEY (salted HMAC).
UPLOAD_CALLBACK_HMAC_KEY = env.str("UPLOAD_CALLBACK_HMAC_KEY", default="")
# Callback public keys that are never fetched: URL prefix -> PEM file shipped with the project.
_ALIBABA_CALLBACK_KEY = str(BASE_DIR / "uploads/keys/alibaba_callback_pub_key_v1.pem")
OSS_CALLBACK_PINNED_KEYS = {
    "https://gosspublic.alicdn.com/": _ALIBABA_CALLBACK_KEY,
    "http://gosspublic.alicdn.com/": _ALIBABA_CALLBACK_KEY,
}
# Other allowed key URLs (the emulator's) are fetched once, within this bound, then cached.
OSS_CALLBACK_KEY_FETCH_TIMEOUT_SECONDS = env.float(
    "OSS_CALLBACK_KEY_FETCH_TIMEOUT_SECONDS", default=1.5
)
# The server's own OSS calls (HeadObject/DeleteObject on the callback path): OSS gives the
# callback 5 s in all, so each call is bounded well below that.
OSS_TIMEOUT_SECONDS = env.float("OSS_TIMEOUT_SECONDS", default=1.5)
# Check a callback's size/type/ETag against HeadObject (the app writes the callback template,
# so the body's values are only as honest as the app). Off saves one OSS round trip.
UPLOAD_CALLBACK_HEAD_CHECK = env.bool("UPLOAD_CALLBACK_HEAD_CHECK", default=True)
