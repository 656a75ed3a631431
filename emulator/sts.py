"""STS AssumeRole, and the resolution of the credentials it issues on later OSS requests.

What this reproduces of Alibaba Cloud STS (wire facts: docs/alibaba-wire.md, STS AssumeRole):

- `AssumeRole` (Version 2015-04-01) over the two signing schemes the official Python SDKs use:
  the RPC scheme of aliyun-python-sdk-core and of alibabacloud-sts20150401 with
  `signature_algorithm='v2'` (parameters in the query and/or a form body; HMAC-SHA1 over
  `POST&%2F&` + the percent-encoded sorted parameters, key = secret + "&"), and ACS3-HMAC-SHA256,
  the default of alibabacloud-sts20150401 (canonical request over the method, path, sorted
  query, the headers named in `SignedHeaders`, and the SHA-256 of the body). Both are verified
  against the caller's secret; `Timestamp`/`x-acs-date` more than 15 minutes off the emulator's
  clock is refused, and a signature nonce is accepted once.
- Only the root key of the configured account may call AssumeRole, and only for a role whose
  trust policy (`Role.trusted_accounts`) names that account; STS credentials cannot chain.
- Parameter checks as STS makes them: `RoleArn` (format, then existence: 404
  `EntityNotExist.Role`), `RoleSessionName` (2-64 of `[A-Za-z0-9.@_-]`), `DurationSeconds`
  (900 up to the role's maximum, default 3600), `Policy` (grammar and 2048-character size via
  `policies.grammar.parse_policy`; an empty `Policy` counts as none).
- Errors are the real JSON shape `{"RequestId", "HostId", "Code", "Message"}` with the real HTTP
  status. `SignatureDoesNotMatch` is HTTP 400 and its message ends with
  "server string to sign is:<string>", because aliyun-python-sdk-core splits the message on ":"
  and, when the string equals its own, reports `InvalidAccessKeySecret` instead (as it does
  against the real STS).
- Issued credentials: `STS.`-prefixed AccessKeyId, a random AccessKeySecret, and a SecurityToken
  that is a sealed, self-contained blob (AES-256-GCM under a key derived from `sealing_key`)
  holding the key id, secret, role, session name, session policy and expiry. Nothing is kept in
  memory, so tokens stay valid across emulator restarts when the sealing key is persisted, and a
  token seen in a log or a presigned URL reveals neither the secret nor the policy. The role's
  own policy is looked up when the token is used, as RAM applies role policy changes at once.
- `resolve()` turns the AccessKeyId and `x-oss-security-token` of an OSS request into a
  `Principal`, with the OSS error codes: `InvalidAccessKeyId`, `InvalidSecurityToken`,
  `SecurityTokenExpired` (all HTTP 403).

Test hooks (for the app server's error paths; none is active by default):

- `assume_role_calls`: how many AssumeRole requests arrived (whatever their outcome), thread-safe;
  also served as JSON at `/_emulator/stats` for app servers in other processes (a fleet).
- `throttle_next(n)`: the next n AssumeRole calls that pass authentication fail with
  `Throttling.User` (HTTP 400), as when the account's ~100 calls/second are used up.
- `set_failure_mode(code)`: every AssumeRole call fails with `code` until
  `set_failure_mode(None)`; codes: "Throttling.User" (400), "InternalError" (500),
  "ServiceUnavailable" (503).
- `delay_seconds`: sleep this long (real time) before answering an AssumeRole call, to exercise
  client timeouts.
- `hold_session(name)`: AssumeRole calls for that RoleSessionName wait (up to 60 s) until the
  returned event is set: one user's STS call stays slow while everyone else's is answered.
- `rate_limit_per_second` (constructor keyword or attribute): a real sliding-window limit per
  account, like STS's; None (the default) means unlimited. `rate_limit_window_seconds` (default
  1.0) stretches the window, so a test can exhaust the limit without depending on speed.
- `issue_credentials(...)`: issue credentials in-process, without HTTP or signature, for tests
  that need an STS principal quickly; it is not counted in `assume_role_calls`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from emulator.clock import Clock
from emulator.config import EmulatorConfig, Role
from policies.grammar import PolicyError, parse_policy

API_VERSION = "2015-04-01"
HOST_ID = "sts.aliyuncs.com"
MIN_DURATION_SECONDS = 900
DEFAULT_DURATION_SECONDS = 3600
MAX_SKEW_SECONDS = 15 * 60
STS_KEY_PREFIX = "STS."
_TOKEN_PREFIX = "EMU1"  # noqa: S105 -- a format marker, not a secret
_TOKEN_AAD = b"emulator/sts-token/v1"

_ROLE_ARN = re.compile(r"^acs:ram::(\d+):role/([A-Za-z0-9.\-]{1,64})$")
_SESSION_NAME = re.compile(r"^[A-Za-z0-9.@_\-]{2,64}$")
_ACS3_AUTH = re.compile(
    r"^(ACS3-HMAC-SHA256)\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]*)\s*,"
    r"\s*Signature=([0-9a-fA-F]+)\s*$"
)
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ")

_FAILURE_MODES = {
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "InternalError": (500, "The request processing has failed due to some unknown error."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
}


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


class CredentialError(Exception):
    """Credentials of an OSS request that OSS would refuse (all HTTP 403)."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class _StsError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Caller:
    access_key_id: str
    is_root: bool


def format_expiration(unix_time: float) -> str:
    return datetime.fromtimestamp(int(unix_time), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


class StsService:
    def __init__(
        self,
        config: EmulatorConfig,
        clock: Clock,
        sealing_key: bytes,
        *,
        rate_limit_per_second: float | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._roles: dict[str, Role] = {role.arn: role for role in config.effective_roles()}
        # A derived key, so the sealing key itself is never used directly for encryption.
        self._aead = AESGCM(hmac.new(sealing_key, _TOKEN_AAD, hashlib.sha256).digest())
        self.rate_limit_per_second = rate_limit_per_second
        self.rate_limit_window_seconds = 1.0
        self.delay_seconds = 0.0
        self._lock = threading.Lock()
        self._calls = 0
        self._throttle_next = 0
        self._failure_mode: str | None = None
        self._holds: dict[str, threading.Event] = {}
        self._nonces: dict[tuple[str, str], float] = {}
        self._recent_calls: deque[float] = deque()
        self._token_cache: dict[str, dict] = {}

    # --- test hooks ---------------------------------------------------------------------------

    @property
    def assume_role_calls(self) -> int:
        with self._lock:
            return self._calls

    def throttle_next(self, n: int) -> None:
        with self._lock:
            self._throttle_next = n

    def hold_session(self, session_name: str) -> threading.Event:
        """AssumeRole calls for `session_name` wait until the returned event is set."""
        release = threading.Event()
        with self._lock:
            self._holds[session_name] = release
        return release

    def set_failure_mode(self, code: str | None) -> None:
        if code is not None and code not in _FAILURE_MODES:
            raise ValueError(
                f"unsupported failure mode {code!r}; use one of {list(_FAILURE_MODES)}"
            )
        with self._lock:
            self._failure_mode = code

    # --- HTTP ---------------------------------------------------------------------------------

    def is_sts_request(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> bool:
        if "Action" in query:
            return True
        return any(name.lower() == "x-acs-action" for name in headers)

    def handle(
        self, method: str, path: str, raw_query: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one STS request; returns (status, headers, body). Never raises for bad input."""
        request_id = str(uuid.uuid4()).upper()
        lowered = {name.lower(): value for name, value in headers.items()}
        try:
            result = self._handle(method.upper(), path, raw_query, lowered, body)
            status, payload = 200, {"RequestId": request_id, **result}
        except _StsError as exc:
            status = exc.status
            payload = {
                "RequestId": request_id,
                "HostId": HOST_ID,
                "Code": exc.code,
                "Message": exc.message,
            }
        response_headers = {
            "Content-Type": "application/json;charset=utf-8",
            "x-acs-request-id": request_id,
        }
        return status, response_headers, json.dumps(payload).encode()

    def _handle(
        self, method: str, path: str, raw_query: str, headers: dict[str, str], body: bytes
    ) -> dict:
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        form: dict[str, str] = {}
        if body and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            try:
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                raise _StsError(400, "InvalidParameter", "The request body is not UTF-8.") from None
        params = {**query, **form}
        authorization = headers.get("authorization", "")
        acs3 = authorization.startswith("ACS3-")
        action = headers.get("x-acs-action", "") if acs3 else params.get("Action", "")
        version = headers.get("x-acs-version", "") if acs3 else params.get("Version", "")
        if action == "AssumeRole":
            with self._lock:
                self._calls += 1
            if self.delay_seconds > 0:
                time.sleep(self.delay_seconds)
            with self._lock:
                hold = self._holds.get(params.get("RoleSessionName", ""))
            if hold is not None:
                hold.wait(timeout=60)
        if not action:
            raise _StsError(400, "MissingAction", "Action is mandatory for this action.")
        if version != API_VERSION:
            raise _StsError(400, "InvalidVersion", "Specified parameter Version is not valid.")
        if action != "AssumeRole":
            raise _StsError(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        if acs3:
            caller = self._authenticate_acs3(method, path, query, headers, body, authorization)
        else:
            caller = self._authenticate_rpc(method, params)
        self._check_limits()
        return self._assume_role(caller, params)

    # --- authentication -----------------------------------------------------------------------

    def _secret_for(self, access_key_id: str, security_token: str | None) -> _Caller:
        if access_key_id == self._config.root_access_key_id:
            return _Caller(access_key_id, is_root=True)
        if access_key_id.startswith(STS_KEY_PREFIX) and security_token:
            try:
                self.resolve(access_key_id, security_token)
            except CredentialError as exc:
                if exc.code == "SecurityTokenExpired":
                    raise _StsError(
                        400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired."
                    ) from None
                raise _StsError(
                    400, "InvalidSecurityToken.Malformed", "Specified SecurityToken is malformed."
                ) from None
            return _Caller(access_key_id, is_root=False)
        raise _StsError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")

    def _secret(self, caller: _Caller, security_token: str | None) -> str:
        if caller.is_root:
            return self._config.root_access_key_secret
        return self.resolve(caller.access_key_id, security_token).access_key_secret

    def _check_time(self, timestamp: str) -> None:
        if not timestamp:
            raise _StsError(400, "MissingTimestamp", "Timestamp is mandatory for this action.")
        when = _parse_time(timestamp)
        if when is None:
            raise _StsError(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        if abs(self._clock.now() - when) > MAX_SKEW_SECONDS:
            raise _StsError(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )

    def _use_nonce(self, nonce: str, access_key_id: str) -> None:
        # Called only once the signature is verified, so a forged request cannot burn a nonce.
        if not nonce:
            raise _StsError(
                400, "MissingSignatureNonce", "SignatureNonce is mandatory for this action."
            )
        now = self._clock.now()
        with self._lock:
            if len(self._nonces) > 10_000:
                self._nonces = {k: v for k, v in self._nonces.items() if v > now}
            key = (access_key_id, nonce)
            if self._nonces.get(key, 0) > now:
                raise _StsError(
                    400, "SignatureNonceUsed", "Specified signature nonce was used already."
                )
            # Remembered as long as a request carrying it could still pass the time check.
            self._nonces[key] = now + 2 * MAX_SKEW_SECONDS

    def _authenticate_rpc(self, method: str, params: dict[str, str]) -> _Caller:
        signature = params.get("Signature")
        access_key_id = params.get("AccessKeyId", "")
        if not signature:
            raise _StsError(400, "MissingSignature", "Signature is mandatory for this action.")
        if not access_key_id:
            raise _StsError(400, "MissingAccessKeyId", "AccessKeyId is mandatory for this action.")
        signature_method = params.get("SignatureMethod", "")
        digests = {"HMAC-SHA1": hashlib.sha1, "HMAC-SHA256": hashlib.sha256}
        if signature_method not in digests:
            raise _StsError(
                400, "InvalidSignatureMethod", "Specified signature method is not valid."
            )
        if params.get("SignatureVersion") != "1.0":
            raise _StsError(
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

    def _authenticate_acs3(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        authorization: str,
    ) -> _Caller:
        match = _ACS3_AUTH.match(authorization)
        if match is None:
            raise _StsError(
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
            raise _StsError(
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

    def _check_limits(self) -> None:
        with self._lock:
            if self._failure_mode is not None:
                status, message = _FAILURE_MODES[self._failure_mode]
                raise _StsError(status, self._failure_mode, message)
            if self._throttle_next > 0:
                self._throttle_next -= 1
                raise _StsError(400, "Throttling.User", _FAILURE_MODES["Throttling.User"][1])
            if self.rate_limit_per_second is not None:
                now = time.monotonic()
                window_start = now - self.rate_limit_window_seconds
                while self._recent_calls and self._recent_calls[0] <= window_start:
                    self._recent_calls.popleft()
                if len(self._recent_calls) >= self.rate_limit_per_second:
                    raise _StsError(400, "Throttling.User", _FAILURE_MODES["Throttling.User"][1])
                self._recent_calls.append(now)

    # --- AssumeRole ---------------------------------------------------------------------------

    def _assume_role(self, caller: _Caller, params: dict[str, str]) -> dict:
        role_arn = params.get("RoleArn", "")
        session_name = params.get("RoleSessionName", "")
        if not role_arn:
            raise _StsError(400, "MissingRoleArn", "RoleArn is mandatory for this action.")
        if not session_name:
            raise _StsError(
                400, "MissingRoleSessionName", "RoleSessionName is mandatory for this action."
            )
        if not caller.is_root:
            raise _StsError(
                403,
                "NoPermission",
                "You are not authorized to do this action. STS credentials cannot assume "
                "a role in this emulator; call AssumeRole with the account's AccessKey.",
            )
        return self.issue_credentials(
            role_arn=role_arn,
            session_name=session_name,
            duration_seconds=params.get("DurationSeconds"),
            policy=params.get("Policy") or None,
        )

    def issue_credentials(
        self,
        *,
        role_arn: str,
        session_name: str,
        duration_seconds: int | str | None = None,
        policy: str | None = None,
    ) -> dict:
        """Validate like AssumeRole and issue credentials; returns the response body's fields
        (`AssumedRoleUser`, `Credentials`) without RequestId."""
        match = _ROLE_ARN.match(role_arn)
        if match is None:
            raise _StsError(
                400, "InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed."
            )
        if not _SESSION_NAME.match(session_name):
            raise _StsError(
                400,
                "InvalidParameter.RoleSessionName",
                "The parameter RoleSessionName is wrongly formed: 2 to 64 characters of letters, "
                "digits and . @ - _",
            )
        if policy is not None:
            try:
                session_policy: dict | None = parse_policy(policy)
            except PolicyError as exc:
                raise _StsError(400, exc.code, exc.message) from None
        else:
            session_policy = None
        role = self._roles.get(role_arn)
        if role is None:
            raise _StsError(404, "EntityNotExist.Role", f"The role not exists: {role_arn}.")
        account = self._config.account_id
        if account not in role.trusted_accounts and "*" not in role.trusted_accounts:
            raise _StsError(
                403,
                "NoPermission",
                f"You are not authorized to do this action. The trust policy of {role_arn} "
                f"does not allow account {account} to assume it.",
            )
        duration = self._duration(duration_seconds, role)
        now = int(self._clock.now())
        expiry = now + duration
        access_key_id = STS_KEY_PREFIX + secrets.token_urlsafe(18).replace("-", "x").replace(
            "_", "y"
        )
        access_key_secret = secrets.token_urlsafe(30)
        token = self._seal(
            {
                "k": access_key_id,
                "s": access_key_secret,
                "r": role_arn,
                "n": session_name,
                "p": session_policy,
                "e": expiry,
                "i": now,
            }
        )
        role_name = match.group(2)
        role_id = str(int(hashlib.sha256(role_arn.encode()).hexdigest(), 16) % 10**18).zfill(18)
        return {
            "AssumedRoleUser": {
                "Arn": f"acs:ram::{match.group(1)}:assumed-role/{role_name}/{session_name}",
                "AssumedRoleId": f"{role_id}:{session_name}",
            },
            "Credentials": {
                "AccessKeyId": access_key_id,
                "AccessKeySecret": access_key_secret,
                "SecurityToken": token,
                "Expiration": format_expiration(expiry),
            },
        }

    @staticmethod
    def _duration(raw: int | str | None, role: Role) -> int:
        if raw is None or raw == "":
            duration = DEFAULT_DURATION_SECONDS
        else:
            try:
                duration = int(raw)
            except (TypeError, ValueError):
                duration = -1
        if not MIN_DURATION_SECONDS <= duration <= role.max_session_duration:
            raise _StsError(
                400,
                "InvalidParameter.DurationSeconds",
                f"The Min/Max value of DurationSeconds is {MIN_DURATION_SECONDS}/"
                f"{role.max_session_duration} seconds.",
            )
        return duration

    # --- tokens -------------------------------------------------------------------------------

    def _seal(self, claims: dict) -> str:
        nonce = secrets.token_bytes(12)
        packed = zlib.compress(json.dumps(claims, separators=(",", ":")).encode())
        sealed = self._aead.encrypt(nonce, packed, _TOKEN_AAD)
        return _TOKEN_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def _unseal(self, token: str) -> dict | None:
        with self._lock:
            cached = self._token_cache.get(token)
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
            if len(self._token_cache) > 1024:
                self._token_cache.clear()
            self._token_cache[token] = claims
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
        claims = self._unseal(security_token)
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


def _signature_mismatch(string_to_sign: str) -> _StsError:
    return _StsError(
        400,
        "SignatureDoesNotMatch",
        f"Specified signature is not matched with our calculation. server string to sign "
        f"is:{string_to_sign}",
    )
