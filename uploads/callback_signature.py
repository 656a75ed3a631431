"""Proof that an upload callback came from OSS (docs/alibaba-wire.md, upload callbacks).

OSS signs ``url_decode(path) + ("?" + raw query, if any) + "\\n" + body`` with RSA PKCS#1 v1.5
over MD5 and names its public key by URL in ``x-oss-pub-key-url``. Anyone can name a key, so the
URL is checked against OSS_CALLBACK_KEY_URL_PREFIXES *before* anything is fetched (otherwise a
forger brings their own key, and the server becomes an SSRF proxy). Alibaba's key never changes
and is pinned in the project (OSS_CALLBACK_PINNED_KEYS); other allowed URLs (the local
emulator's) are fetched once with a short timeout and cached. Such a key can change at its URL
(an emulator started afresh makes a new one): when a signature fails against it, the URL is
read again, at most once per KEY_REFRESH_SECONDS, so forgeries cannot make the server fetch on
their behalf.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
from pathlib import Path

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.core.cache import cache

from appserver.errors import AppError, PermissionDenied

logger = logging.getLogger(__name__)

_KEY_CACHE_SECONDS = 24 * 3600
KEY_REFRESH_SECONDS = 30
_MAX_KEY_BYTES = 16 * 1024
_keys: dict[str, rsa.RSAPublicKey] = {}
_keys_lock = threading.Lock()


class CallbackSignatureInvalid(PermissionDenied):
    code, message = "callback_signature_invalid", "The callback signature is not valid."


class CallbackKeyRefused(PermissionDenied):
    code, message = "callback_key_refused", "The callback's public key URL is not allowed."


class CallbackSignatureMissing(AppError):
    status, code = 400, "callback_signature_missing"
    message = "The callback has no authorization or x-oss-pub-key-url header."


def string_to_sign(*, path: str, query_string: str, body: bytes) -> bytes:
    """`path` already decoded (Django's request.path); the query string raw, as received."""
    signed = path + ("?" + query_string if query_string else "")
    return signed.encode("utf-8") + b"\n" + body


def _load_pem(pem: bytes) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def _pinned(url: str) -> rsa.RSAPublicKey | None:
    matches = [p for p in settings.OSS_CALLBACK_PINNED_KEYS if url.startswith(p)]
    if not matches:
        return None
    path = settings.OSS_CALLBACK_PINNED_KEYS[max(matches, key=len)]
    cache_key = "pinned:" + str(path)
    with _keys_lock:
        key = _keys.get(cache_key)
    if key is None:
        key = _load_pem(Path(path).read_bytes())
        with _keys_lock:
            _keys[cache_key] = key
    return key


def _url_cache_key(url: str) -> str:
    return "uploads:callback-key:" + hashlib.sha256(url.encode()).hexdigest()


def _fetched(url: str, *, fresh: bool = False) -> rsa.RSAPublicKey:
    """The key at `url`: from this process, the shared cache, or (first time, or `fresh`) the
    URL itself."""
    with _keys_lock:
        key = None if fresh else _keys.get(url)
    if key is not None:
        return key
    cache_key = _url_cache_key(url)
    pem = None if fresh else cache.get(cache_key)
    if pem is None:
        try:
            response = requests.get(
                url,
                timeout=settings.OSS_CALLBACK_KEY_FETCH_TIMEOUT_SECONDS,
                allow_redirects=False,
                stream=True,
            )
            pem = response.raw.read(_MAX_KEY_BYTES + 1, decode_content=True)
            response.close()
        except requests.RequestException as exc:
            logger.warning("Could not fetch the callback public key: %s", type(exc).__name__)
            raise CallbackSignatureInvalid(
                "The callback's public key could not be fetched.", code="callback_key_unavailable"
            ) from exc
        if response.status_code != 200 or len(pem) > _MAX_KEY_BYTES:
            raise CallbackSignatureInvalid(
                "The callback's public key could not be fetched.", code="callback_key_unavailable"
            )
    try:
        key = _load_pem(pem)
    except ValueError as exc:
        raise CallbackSignatureInvalid(
            "The callback's public key is not an RSA PEM key.", code="callback_key_unavailable"
        ) from exc
    cache.set(cache_key, pem, _KEY_CACHE_SECONDS)
    with _keys_lock:
        _keys[url] = key
    return key


def callback_public_key(*, key_url: str) -> rsa.RSAPublicKey:
    """The key OSS signed with: pinned if known, else fetched from an allowed URL only."""
    allowed = settings.OSS_CALLBACK_KEY_URL_PREFIXES
    if not any(key_url.startswith(prefix) for prefix in allowed if prefix):
        raise CallbackKeyRefused()
    return _pinned(key_url) or _fetched(key_url)


def callback_verify(
    *, authorization: str, pub_key_url_b64: str, path: str, query_string: str, body: bytes
) -> None:
    """Raise unless the callback is signed by an allowed OSS key. Nothing else is trusted yet."""
    if not authorization or not pub_key_url_b64:
        raise CallbackSignatureMissing()
    try:
        key_url = base64.b64decode(pub_key_url_b64, validate=True).decode("ascii")
        signature = base64.b64decode(authorization, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CallbackSignatureInvalid("The callback's headers are not valid base64.") from exc
    key = callback_public_key(key_url=key_url)
    signed = string_to_sign(path=path, query_string=query_string, body=body)
    if _signed_by(key, signature, signed):
        return
    if _pinned(key_url) is None and cache.add(
        _url_cache_key(key_url) + ":refreshed", 1, KEY_REFRESH_SECONDS
    ):
        current = _fetched(key_url, fresh=True)
        if current.public_numbers() != key.public_numbers() and _signed_by(
            current, signature, signed
        ):
            return
    raise CallbackSignatureInvalid()


def _signed_by(key: rsa.RSAPublicKey, signature: bytes, signed: bytes) -> bool:
    try:
        # MD5 because that is what OSS signs callbacks with.
        key.verify(signature, signed, padding.PKCS1v15(), hashes.MD5())  # noqa: S303
    except InvalidSignature:
        return False
    return True
