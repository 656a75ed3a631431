"""The cached credential entry and its encryption at rest.

Entries are encrypted (Fernet: AES-128-CBC + HMAC-SHA256) with ``CREDENTIALS_ENCRYPTION_KEY``
or a key derived from SECRET_KEY with HKDF: whoever reads Redis sees no secret, and an entry
copied under another user's key is refused (user and scope are inside the encrypted payload).
The entry holds the SHA-256 of the policy it was issued for, so a changed template, bucket or
prefix makes it a miss and a stale grant is never served.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from policies.services import RenderedPolicy

# Android's and iOS's auth providers refresh this long before Expiration.
SDK_REFRESH_MARGIN_SECONDS = 300


def refresh_margin_seconds() -> int:
    """How long before Expiration an entry stops being handed out."""
    return SDK_REFRESH_MARGIN_SECONDS + settings.CREDENTIALS_SAFETY_WINDOW_SECONDS


@dataclass(frozen=True)
class CachedEntry:
    user_pk: int
    scope: str
    policy_sha256: str
    access_key_id: str
    access_key_secret: str
    security_token: str
    expiration: int  # unix seconds
    grant_id: int

    def refresh_at(self) -> float:
        return self.expiration - refresh_margin_seconds()


def entry_is_current(entry: CachedEntry, *, policy: RenderedPolicy) -> bool:
    """Issued for this very policy, and not yet due for refresh."""
    return entry.policy_sha256 == policy.sha256 and time.time() < entry.refresh_at()


def _keys_for(configured: str, secret_key: str) -> list[bytes]:
    if configured:
        return [key.strip().encode() for key in configured.split(",") if key.strip()]
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"appserver/tokens",
        info=b"credentials-cache/v1",
    ).derive(secret_key.encode())
    return [base64.urlsafe_b64encode(derived)]


@lru_cache(maxsize=4)
def _fernet_for(configured: str, secret_key: str) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in _keys_for(configured, secret_key)])


def _fernet() -> MultiFernet:
    return _fernet_for(settings.CREDENTIALS_ENCRYPTION_KEY, settings.SECRET_KEY)


@lru_cache(maxsize=4)
def _sealing_key_id(configured: str, secret_key: str) -> str:
    # A one-way digest of the key that encrypts: it names the key in cache keys, never reveals it.
    encrypting = _keys_for(configured, secret_key)[0]
    return hashlib.sha256(b"appserver/tokens/key-id\n" + encrypting).hexdigest()


@lru_cache(maxsize=1024)
def _version(role_arn: str, policy_sha256: str, key_id: str) -> str:
    return hashlib.sha256(f"{role_arn}\n{policy_sha256}\n{key_id}".encode()).hexdigest()


def entry_version(policy: RenderedPolicy) -> str:
    """What a release decides about an entry besides the user and scope: the policy, the role
    it is assumed from, and the key that seals it (an instance that cannot decrypt another's
    entries, during a key rotation, must not keep replacing them)."""
    key_id = _sealing_key_id(settings.CREDENTIALS_ENCRYPTION_KEY, settings.SECRET_KEY)
    return _version(settings.STS_ROLE_ARN, policy.sha256, key_id)


def entry_seal(entry: CachedEntry) -> str:
    payload = json.dumps(entry.__dict__, separators=(",", ":")).encode()
    return _fernet().encrypt(payload).decode("ascii")


@lru_cache(maxsize=2048)
def _decrypt_memoised(raw: str, fernet: MultiFernet) -> CachedEntry | None:
    # Memoised on the exact ciphertext (and key set): an entry is read on every request of its
    # window, and decrypting it again each time is a fifth of the hot path's own work. Only the
    # ciphertext Redis returns can reach a memoised entry, so a deleted entry stays gone.
    try:
        return CachedEntry(**json.loads(fernet.decrypt(raw.encode("ascii"))))
    except (InvalidToken, ValueError, TypeError):
        # Rotated key or foreign value: a miss, never an error.
        return None


def entry_unseal(raw: object, *, user_pk: int, scope: str) -> CachedEntry | None:
    """The entry in a cached value if it decrypts and belongs to this user and scope."""
    if not isinstance(raw, str):
        return None
    entry = _decrypt_memoised(raw, _fernet())
    if entry is None or entry.user_pk != user_pk or entry.scope != scope:
        return None
    return entry


def entry_unseal_current(
    raw: object, *, user_pk: int, scope: str, policy: RenderedPolicy
) -> CachedEntry | None:
    """The entry in a cached value if it is this user's, for this policy, and not yet due."""
    entry = entry_unseal(raw, user_pk=user_pk, scope=scope)
    return entry if entry is not None and entry_is_current(entry, policy=policy) else None
