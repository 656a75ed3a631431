"""The STS service: AssumeRole's parameters, trust and limits, its JSON answers, and the test
hooks; signing.py authenticates the request and tokens.py seals what it issues.

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

import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from urllib.parse import parse_qsl

from emulator.clock import Clock
from emulator.config import EmulatorConfig, Role
from emulator.sts.errors import StsError
from emulator.sts.signing import Caller, RequestVerifier
from emulator.sts.tokens import STS_KEY_PREFIX, Principal, SessionTokens, format_expiration
from policies.grammar import PolicyError, parse_policy

API_VERSION = "2015-04-01"
HOST_ID = "sts.aliyuncs.com"
MIN_DURATION_SECONDS = 900
DEFAULT_DURATION_SECONDS = 3600

_ROLE_ARN = re.compile(r"^acs:ram::(\d+):role/([A-Za-z0-9.\-]{1,64})$")
_SESSION_NAME = re.compile(r"^[A-Za-z0-9.@_\-]{2,64}$")

_FAILURE_MODES = {
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "InternalError": (500, "The request processing has failed due to some unknown error."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
}


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
        self.rate_limit_per_second = rate_limit_per_second
        self.rate_limit_window_seconds = 1.0
        self._tokens = SessionTokens(config, clock, self._roles, sealing_key)
        self._verifier = RequestVerifier(config, clock, self._tokens)
        self.delay_seconds = 0.0
        self._lock = threading.Lock()
        self._calls = 0
        self._throttle_next = 0
        self._failure_mode: str | None = None
        self._holds: dict[str, threading.Event] = {}
        self._recent_calls: deque[float] = deque()

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
        except StsError as exc:
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
                raise StsError(400, "InvalidParameter", "The request body is not UTF-8.") from None
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
            raise StsError(400, "MissingAction", "Action is mandatory for this action.")
        if version != API_VERSION:
            raise StsError(400, "InvalidVersion", "Specified parameter Version is not valid.")
        if action != "AssumeRole":
            raise StsError(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        if acs3:
            caller = self._verifier.authenticate_acs3(
                method, path, query, headers, body, authorization
            )
        else:
            caller = self._verifier.authenticate_rpc(method, params)
        self._check_limits()
        return self._assume_role(caller, params)

    def _check_limits(self) -> None:
        with self._lock:
            if self._failure_mode is not None:
                status, message = _FAILURE_MODES[self._failure_mode]
                raise StsError(status, self._failure_mode, message)
            if self._throttle_next > 0:
                self._throttle_next -= 1
                raise StsError(400, "Throttling.User", _FAILURE_MODES["Throttling.User"][1])
            if self.rate_limit_per_second is not None:
                now = time.monotonic()
                window_start = now - self.rate_limit_window_seconds
                while self._recent_calls and self._recent_calls[0] <= window_start:
                    self._recent_calls.popleft()
                if len(self._recent_calls) >= self.rate_limit_per_second:
                    raise StsError(400, "Throttling.User", _FAILURE_MODES["Throttling.User"][1])
                self._recent_calls.append(now)

    # --- AssumeRole ---------------------------------------------------------------------------

    def _assume_role(self, caller: Caller, params: dict[str, str]) -> dict:
        role_arn = params.get("RoleArn", "")
        session_name = params.get("RoleSessionName", "")
        if not role_arn:
            raise StsError(400, "MissingRoleArn", "RoleArn is mandatory for this action.")
        if not session_name:
            raise StsError(
                400, "MissingRoleSessionName", "RoleSessionName is mandatory for this action."
            )
        if not caller.is_root:
            raise StsError(
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
            raise StsError(
                400, "InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed."
            )
        if not _SESSION_NAME.match(session_name):
            raise StsError(
                400,
                "InvalidParameter.RoleSessionName",
                "The parameter RoleSessionName is wrongly formed: 2 to 64 characters of letters, "
                "digits and . @ - _",
            )
        if policy is not None:
            try:
                session_policy: dict | None = parse_policy(policy)
            except PolicyError as exc:
                raise StsError(400, exc.code, exc.message) from None
        else:
            session_policy = None
        role = self._roles.get(role_arn)
        if role is None:
            raise StsError(404, "EntityNotExist.Role", f"The role not exists: {role_arn}.")
        account = self._config.account_id
        if account not in role.trusted_accounts and "*" not in role.trusted_accounts:
            raise StsError(
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
        token = self._tokens.seal(
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
            raise StsError(
                400,
                "InvalidParameter.DurationSeconds",
                f"The Min/Max value of DurationSeconds is {MIN_DURATION_SECONDS}/"
                f"{role.max_session_duration} seconds.",
            )
        return duration

    # --- OSS requests -------------------------------------------------------------------------

    def resolve(self, access_key_id: str, security_token: str | None) -> Principal:
        """The principal behind an OSS request's AccessKeyId and x-oss-security-token."""
        return self._tokens.resolve(access_key_id, security_token)
