"""Security tokens: the credentials AssumeRole issues, sealed into the token itself, and the
principal they stand for when an OSS request presents them.

A token is AES-256-GCM under a key derived from the emulator's sealing key, holding the key id,
secret, role, session name, session policy and expiry: nothing is kept in memory, so tokens
outlive a restart when the sealing key is persisted, and a token seen in a log or a presigned URL
reveals neither the secret nor the policy. The role's own policy is looked up when the token is
used, as RAM applies role policy changes at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from emulator.clock import Clock
from emulator.config import EmulatorConfig, Role
from emulator.sts.errors import CredentialError

STS_KEY_PREFIX = "STS."
_TOKEN_PREFIX = "EMU1"  # noqa: S105 -- a format marker, not a secret
_TOKEN_AAD = b"emulator/sts-token/v1"


@dataclass(frozen=True)
class Principal:
    access_key_id: str
    access_key_secret: str
    is_root: bool
    role_arn: str | None
    session_name: str | None
    # (("role", role_policy), ("session", session_policy)); "session" omitted when none was given
    policies: tuple[tuple[str, dict], ...]
    expiration: float | None  # unix time; None for root keys


def format_expiration(unix_time: float) -> str:
    return datetime.fromtimestamp(int(unix_time), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SessionTokens:
    """Seals claims into security tokens, and resolves an OSS request's key id and token."""

    def __init__(
        self,
        config: EmulatorConfig,
        clock: Clock,
        roles: Mapping[str, Role],
        sealing_key: bytes,
    ) -> None:
        self._config = config
        self._clock = clock
        self._roles = roles
        # A derived key, so the sealing key itself is never used directly for encryption.
        self._aead = AESGCM(hmac.new(sealing_key, _TOKEN_AAD, hashlib.sha256).digest())
        self._lock = threading.Lock()
        self._cache: dict[str, dict] = {}

    def seal(self, claims: dict) -> str:
        nonce = secrets.token_bytes(12)
        packed = zlib.compress(json.dumps(claims, separators=(",", ":")).encode())
        sealed = self._aead.encrypt(nonce, packed, _TOKEN_AAD)
        return _TOKEN_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def unseal(self, token: str) -> dict | None:
        with self._lock:
            cached = self._cache.get(token)
        if cached is not None:
            return cached
        if not token.startswith(_TOKEN_PREFIX) or len(token) > 16_384:
            return None
        raw = token[len(_TOKEN_PREFIX) :]
        try:
            blob = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            packed = self._aead.decrypt(blob[:12], blob[12:], _TOKEN_AAD)
            claims = json.loads(zlib.decompress(packed))
        except (ValueError, InvalidTag, zlib.error):
            return None
        with self._lock:
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[token] = claims
        return claims

    def resolve(self, access_key_id: str, security_token: str | None) -> Principal:
        """The principal behind an OSS request's AccessKeyId and x-oss-security-token."""
        if access_key_id == self._config.root_access_key_id:
            if security_token:
                raise _invalid_token()
            return Principal(
                access_key_id=access_key_id,
                access_key_secret=self._config.root_access_key_secret,
                is_root=True,
                role_arn=None,
                session_name=None,
                policies=(),
                expiration=None,
            )
        if not access_key_id.startswith(STS_KEY_PREFIX) or not security_token:
            raise CredentialError(
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
            )
        claims = self.unseal(security_token)
        if claims is None or claims.get("k") != access_key_id:
            raise _invalid_token()
        role = self._roles.get(claims["r"])
        if role is None:
            raise _invalid_token()
        if self._clock.now() >= claims["e"]:
            raise CredentialError(
                "SecurityTokenExpired", "The security token you provided has expired."
            )
        policies: tuple[tuple[str, dict], ...] = (("role", role.policy),)
        if claims["p"] is not None:
            policies += (("session", claims["p"]),)
        return Principal(
            access_key_id=access_key_id,
            access_key_secret=claims["s"],
            is_root=False,
            role_arn=claims["r"],
            session_name=claims["n"],
            policies=policies,
            expiration=float(claims["e"]),
        )


def _invalid_token() -> CredentialError:
    return CredentialError("InvalidSecurityToken", "The security token you provided is invalid.")
