"""Who signed an STS request, and whether it may be believed.

The two signing schemes of the official Python SDKs: the RPC scheme (parameters in the query
and/or a form body; HMAC-SHA1 or HMAC-SHA256 over `POST&%2F&` + the percent-encoded sorted
parameters, key = secret + "&") and ACS3-HMAC-SHA256 (a canonical request over the method, path,
sorted query, the headers named in `SignedHeaders` and the SHA-256 of the body). The signer is
the account's root key or a key of credentials STS issued; `Timestamp`/`x-acs-date` more than
15 minutes off the emulator's clock is refused, and a signature nonce is accepted once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from emulator.clock import Clock
from emulator.config import EmulatorConfig
from emulator.sts.errors import CredentialError, StsError
from emulator.sts.tokens import STS_KEY_PREFIX, SessionTokens

MAX_SKEW_SECONDS = 15 * 60
_ACS3_AUTH = re.compile(
    r"^(ACS3-HMAC-SHA256)\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]*)\s*,"
    r"\s*Signature=([0-9a-fA-F]+)\s*$"
)
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Caller:
    access_key_id: str
    is_root: bool


def _parse_time(text: str) -> float | None:
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def _percent(text: str) -> str:
    # RFC 3986: only unreserved characters stay as they are (Python's quote keeps "-_." too).
    return quote(text, safe="~")


def rpc_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """The RPC (signature version 1.0) string to sign, as aliyun-python-sdk-core builds it."""
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(f"{_percent(k)}={_percent(v)}" for k, v in pairs)
    return f"{method}&%2F&{_percent(canonical)}"


def acs3_canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    signed_headers: list[str],
    payload_hash: str,
) -> str:
    """The ACS3 canonical request, as alibabacloud_tea_openapi's get_authorization builds it."""
    canonical_query = "&".join(f"{k}={_percent(query[k])}" for k in sorted(query))
    canonical_headers = "".join(
        f"{name}:{headers.get(name, '').strip()}\n" for name in signed_headers
    )
    return (
        f"{method}\n{path or '/'}\n{canonical_query}\n{canonical_headers}\n"
        f"{';'.join(signed_headers)}\n{payload_hash}"
    )


class RequestVerifier:
    """Authenticates STS requests against the root key or issued credentials, once per nonce."""

    def __init__(self, config: EmulatorConfig, clock: Clock, tokens: SessionTokens) -> None:
        self._config = config
        self._clock = clock
        self._tokens = tokens
        self._lock = threading.Lock()
        self._nonces: dict[tuple[str, str], float] = {}

    def authenticate_rpc(self, method: str, params: dict[str, str]) -> Caller:
        signature = params.get("Signature")
        access_key_id = params.get("AccessKeyId", "")
        if not signature:
            raise StsError(400, "MissingSignature", "Signature is mandatory for this action.")
        if not access_key_id:
            raise StsError(400, "MissingAccessKeyId", "AccessKeyId is mandatory for this action.")
        signature_method = params.get("SignatureMethod", "")
        digests = {"HMAC-SHA1": hashlib.sha1, "HMAC-SHA256": hashlib.sha256}
        if signature_method not in digests:
            raise StsError(
                400, "InvalidSignatureMethod", "Specified signature method is not valid."
            )
        if params.get("SignatureVersion") != "1.0":
            raise StsError(
                400, "InvalidSignatureVersion", "Specified signature version is not valid."
            )
        token = params.get("SecurityToken")
        caller = self._secret_for(access_key_id, token)
        self._check_time(params.get("Timestamp", ""))
        string_to_sign = rpc_string_to_sign(method, params)
        key = (self._secret(caller, token) + "&").encode()
        digest = hmac.new(key, string_to_sign.encode(), digests[signature_method]).digest()
        expected = base64.b64encode(digest).decode()
        if not hmac.compare_digest(expected, signature):
            raise _signature_mismatch(string_to_sign)
        self._use_nonce(params.get("SignatureNonce", ""), access_key_id)
        return caller

    def authenticate_acs3(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        authorization: str,
    ) -> Caller:
        match = _ACS3_AUTH.match(authorization)
        if match is None:
            raise StsError(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards.",
            )
        algorithm, access_key_id, signed, signature = match.groups()
        signed_headers = [name for name in signed.split(";") if name]
        # Everything that makes the request unique must be covered by the signature.
        required = {"host", *(name for name in headers if name.startswith("x-acs-"))}
        missing = sorted(required - set(signed_headers))
        if missing:
            raise StsError(
                400,
                "IncompleteSignature",
                f"The request signature does not conform to Aliyun standards: header {missing[0]} "
                "must be signed.",
            )
        token = headers.get("x-acs-security-token")
        caller = self._secret_for(access_key_id, token)
        self._check_time(headers.get("x-acs-date", ""))
        payload_hash = hashlib.sha256(body).hexdigest()
        canonical = acs3_canonical_request(
            method, path.split("?", 1)[0], query, headers, signed_headers, payload_hash
        )
        string_to_sign = f"{algorithm}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        secret = self._secret(caller, token).encode()
        expected = hmac.new(secret, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise _signature_mismatch(string_to_sign)
        self._use_nonce(headers.get("x-acs-signature-nonce", ""), access_key_id)
        return caller

    def _secret_for(self, access_key_id: str, security_token: str | None) -> Caller:
        if access_key_id == self._config.root_access_key_id:
            return Caller(access_key_id, is_root=True)
        if access_key_id.startswith(STS_KEY_PREFIX) and security_token:
            try:
                self._tokens.resolve(access_key_id, security_token)
            except CredentialError as exc:
                if exc.code == "SecurityTokenExpired":
                    raise StsError(
                        400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired."
                    ) from None
                raise StsError(
                    400, "InvalidSecurityToken.Malformed", "Specified SecurityToken is malformed."
                ) from None
            return Caller(access_key_id, is_root=False)
        raise StsError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")

    def _secret(self, caller: Caller, security_token: str | None) -> str:
        if caller.is_root:
            return self._config.root_access_key_secret
        return self._tokens.resolve(caller.access_key_id, security_token).access_key_secret

    def _check_time(self, timestamp: str) -> None:
        if not timestamp:
            raise StsError(400, "MissingTimestamp", "Timestamp is mandatory for this action.")
        when = _parse_time(timestamp)
        if when is None:
            raise StsError(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        if abs(self._clock.now() - when) > MAX_SKEW_SECONDS:
            raise StsError(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )

    def _use_nonce(self, nonce: str, access_key_id: str) -> None:
        # Called only once the signature is verified, so a forged request cannot burn a nonce.
        if not nonce:
            raise StsError(
                400, "MissingSignatureNonce", "SignatureNonce is mandatory for this action."
            )
        now = self._clock.now()
        with self._lock:
            if len(self._nonces) > 10_000:
                self._nonces = {k: v for k, v in self._nonces.items() if v > now}
            key = (access_key_id, nonce)
            if self._nonces.get(key, 0) > now:
                raise StsError(
                    400, "SignatureNonceUsed", "Specified signature nonce was used already."
                )
            # Remembered as long as a request carrying it could still pass the time check.
            self._nonces[key] = now + 2 * MAX_SKEW_SECONDS


def _signature_mismatch(string_to_sign: str) -> StsError:
    return StsError(
        400,
        "SignatureDoesNotMatch",
        f"Specified signature is not matched with our calculation. server string to sign "
        f"is:{string_to_sign}",
    )
