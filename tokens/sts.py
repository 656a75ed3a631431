"""Alibaba Cloud STS AssumeRole: the only module that imports the STS SDK.

What it assumes on the cloud side (set up once per deployment, see docs):

- A RAM user for the server (``ALIBABA_ACCESS_KEY_ID`` / ``ALIBABA_ACCESS_KEY_SECRET``) whose only
  permission is ``sts:AssumeRole`` on the one role below (AliyunSTSAssumeRoleAccess scoped to it).
- A RAM role (``STS_ROLE_ARN``, ``acs:ram::<account>:role/<name>``) whose trust policy lets that
  account (or that RAM user) assume it, and whose own policy grants the OSS actions on the upload
  bucket and nothing else. What an app receives is the role's policy *intersected* with the
  session policy rendered per user by policies/; without a session policy the credentials would
  carry the whole role, so this module refuses to call STS without one.
- The role's MaxSessionDuration (3600-43200 s) is at least ``STS_DURATION_SECONDS`` (>= 900), or
  STS refuses with InvalidParameter.DurationSeconds.
- AssumeRole is limited to about 100 calls per second per account. tokens.services reuses each
  result for its lifetime; this module makes exactly one attempt per call (the SDK's automatic
  retries are off), bounded by ``STS_TIMEOUT_SECONDS`` for the connection and for the answer.

Every failure leaves as a typed ``StsError`` carrying our own message and STS's error code and
request id (safe to log); never STS's raw message (the SignatureDoesNotMatch message embeds the
string to sign) nor a secret. The SDK's own logger is silenced for the same reason.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdksts.request.v20150401.AssumeRoleRequest import AssumeRoleRequest
from django.conf import settings

from appserver import metrics

logger = logging.getLogger(__name__)
# The SDK logs STS's raw error messages (ERROR) and response bodies holding secrets (DEBUG).
logging.getLogger("aliyunsdkcore").setLevel(logging.CRITICAL)

EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class StsCredentials:
    access_key_id: str
    access_key_secret: str
    security_token: str
    expiration: datetime  # aware, UTC
    request_id: str

    def __repr__(self) -> str:  # never print the secret or the token by accident
        return (
            f"StsCredentials(access_key_id={self.access_key_id!r}, "
            f"expiration={self.expiration.isoformat()}, request_id={self.request_id!r})"
        )


class StsError(Exception):
    """AssumeRole did not produce credentials. ``str()`` is our own message, safe to show."""

    kind = "unavailable"
    message = "The STS service is unavailable."

    def __init__(self, *, sts_code: str = "", request_id: str = "", http_status: int = 0) -> None:
        super().__init__(self.message)
        self.sts_code = sts_code
        self.request_id = request_id
        self.http_status = http_status


class StsThrottled(StsError):
    kind = "throttled"
    message = "STS is throttling AssumeRole calls for this account."


class StsRefused(StsError):
    """STS refused the request itself: wrong keys, role ARN, trust policy, duration or policy.

    A configuration problem on our side; retrying the same request does not help."""

    kind = "refused"
    message = "STS refused the AssumeRole request (check the server's STS configuration)."


class StsUnreachable(StsError):
    kind = "unreachable"
    message = "STS could not be reached, or failed on its side."


class StsTimeout(StsError):
    kind = "timeout"
    message = "STS did not answer in time."


def _client() -> AcsClient:
    timeout = settings.STS_TIMEOUT_SECONDS
    return AcsClient(
        ak=settings.ALIBABA_ACCESS_KEY_ID,
        secret=settings.ALIBABA_ACCESS_KEY_SECRET,
        region_id=settings.OSS_REGION,
        # One attempt per call: retries would multiply STS load and stretch the bounded timeout.
        auto_retry=False,
        connect_timeout=timeout,
        timeout=timeout,
    )


def _classify_server_error(exc: ServerException) -> StsError:
    code = exc.get_error_code() or ""
    status = exc.get_http_status() or 0
    request_id = exc.get_request_id() or ""
    if code.startswith("Throttling"):
        cls: type[StsError] = StsThrottled
    elif status >= 500 or code in {"InternalError", "ServiceUnavailable"}:
        cls = StsUnreachable
    else:
        cls = StsRefused
    return cls(sts_code=code, request_id=request_id, http_status=status)


def _classify_client_error(exc: ClientException) -> StsError:
    code = exc.get_error_code() or ""
    text = (exc.get_error_msg() or "").lower()
    # The SDK flattens requests' exceptions into text: a timeout is only recognisable by it.
    if "timed out" in text or "timeout" in text:
        return StsTimeout(sts_code=code)
    if code == "SDK.HttpError":
        return StsUnreachable(sts_code=code)
    # Anything else the SDK raises before sending (invalid region, bad parameters) is ours.
    return StsRefused(sts_code=code)


def _parse_expiration(text: str) -> datetime:
    return datetime.strptime(text, EXPIRATION_FORMAT).replace(tzinfo=UTC)


def sts_assume_role(
    *, role_arn: str, policy: str, session_name: str, duration_seconds: int
) -> StsCredentials:
    """Call AssumeRole once; raises a StsError subclass on any failure."""
    if not policy:
        raise ValueError("A session policy is required: without one the role's grant is whole.")
    request = AssumeRoleRequest()
    endpoint = settings.STS_ENDPOINT
    # "http://host:port" is used verbatim by the SDK (the emulator); a bare host name gets https.
    request.set_endpoint(endpoint)
    request.set_RoleArn(role_arn)
    request.set_RoleSessionName(session_name)
    request.set_DurationSeconds(duration_seconds)
    request.set_Policy(policy)
    started = time.perf_counter()
    try:
        body = _client().do_action_with_exception(request)
    except ServerException as exc:
        error = _classify_server_error(exc)
    except ClientException as exc:
        error = _classify_client_error(exc)
    except IndexError:
        # aliyunsdkcore crashes on a SignatureDoesNotMatch message without ":" (wire section 1).
        error = StsRefused(sts_code="SignatureDoesNotMatch")
    except Exception:  # nothing from the SDK may escape untyped, or leak its text
        error = StsUnreachable(sts_code="SDK.UnexpectedError")
    else:
        try:
            data = json.loads(body)
            credentials = data["Credentials"]
            result = StsCredentials(
                access_key_id=credentials["AccessKeyId"],
                access_key_secret=credentials["AccessKeySecret"],
                security_token=credentials["SecurityToken"],
                expiration=_parse_expiration(credentials["Expiration"]),
                request_id=str(data.get("RequestId", "")),
            )
        except (ValueError, KeyError, TypeError):
            error = StsUnreachable(sts_code="InvalidResponse")
        else:
            metrics.sts_call_observe(seconds=time.perf_counter() - started)
            return result
    metrics.sts_call_observe(
        seconds=time.perf_counter() - started, kind=error.kind, code=error.sts_code
    )
    logger.warning(
        "AssumeRole failed: %s (STS code %s, HTTP %s, STS request id %s, endpoint %s)",
        error.kind,
        error.sts_code or "-",
        error.http_status or "-",
        error.request_id or "-",
        endpoint,
    )
    raise error
