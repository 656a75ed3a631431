"""Webhook signing secrets at rest: Fernet-encrypted with EVENTS_ENCRYPTION_KEY, or with a key
derived from SECRET_KEY (HKDF) when that is empty. The worker needs the secret itself for the
HMAC, so it cannot be hashed; a database dump alone does not reveal it."""

from __future__ import annotations

import base64
import secrets as random_secrets
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SecretUnreadable(Exception):
    """The stored secret does not decrypt (the key changed): set a new secret."""


@lru_cache(maxsize=4)
def _fernet_for(configured: str, secret_key: str) -> MultiFernet:
    if configured:
        # Comma-separated: the first encrypts, all decrypt (rotation).
        return MultiFernet([Fernet(k.strip().encode()) for k in configured.split(",") if k.strip()])
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"appserver-webhook-secrets"
    ).derive(secret_key.encode())
    return MultiFernet([Fernet(base64.urlsafe_b64encode(derived))])


def _fernet() -> MultiFernet:
    return _fernet_for(settings.EVENTS_ENCRYPTION_KEY, settings.SECRET_KEY)


def secret_generate() -> str:
    return "whsec_" + random_secrets.token_urlsafe(32)


def secret_seal(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def secret_open(sealed: str) -> str:
    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("The endpoint's secret does not decrypt; set a new one.") from exc
