"""The in-process metrics, and the small functions the apps call to record them.

Every label value is either a URL route pattern, a method, a status code, or a code from a
fixed set in this project's own code (refusal reasons, error codes, STS error kinds); anything
else is recorded as "other", so no request can grow the number of series.
"""

from __future__ import annotations

import re

from prometheus_client import Counter, Histogram, disable_created_metrics

# No `*_created` series: multiprocess mode has none, and one process should expose the same.
disable_created_metrics()

# Codes are snake_case identifiers from our own classes; the guard keeps a mistake from ever
# turning free text into a label.
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def _code(value: str) -> str:
    return value if _CODE.match(value) else "other"


# --- HTTP requests (appserver.metrics.middleware) ------------------------------------------------

REQUESTS = Counter(
    "appserver_http_requests",
    "HTTP requests answered, by URL route pattern, method and status code.",
    ["endpoint", "method", "status"],
)
REQUEST_DURATION = Histogram(
    "appserver_http_request_duration_seconds",
    "Time from the request reaching Django to its response, by URL route pattern and method.",
    ["endpoint", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# --- OSS callbacks and confirmations (uploads/apis.py) ------------------------------------------

CALLBACK_OUTCOMES = ("accepted", "refused", "rejected", "unavailable")
# OSS waits 5 s for the answer, then reports 203 CallbackFailed to the app: the buckets are
# dense around that limit, so p99 and "share answered within 4 s" are read without guessing.
CALLBACK_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 6.0, 8.0, 10.0)
CALLBACK_DURATION = Histogram(
    "appserver_callback_duration_seconds",
    "Time the server took to answer an OSS upload callback (OSS gives up after 5 s).",
    buckets=CALLBACK_BUCKETS,
)
CALLBACKS = Counter(
    "appserver_callbacks",
    "OSS upload callbacks by outcome (accepted, refused, rejected: not verifiable, "
    "unavailable: 503) and reason (the refusal reason or error code; none when accepted).",
    ["outcome", "reason"],
)
CONFIRMATIONS = Counter(
    "appserver_confirmations",
    "Upload confirmations (POST /api/uploads/tickets/{id}/confirm/) by outcome (accepted, "
    "refused, error) and reason (the refusal reason or error code; none when accepted).",
    ["outcome", "reason"],
)
QUOTA_STAGES = ("ticket", "callback", "confirmation")
QUOTA_REFUSALS = Counter(
    "appserver_quota_refusals",
    "Uploads refused for the storage quota, by where: ticket (before any upload), callback or "
    "confirmation (the stored object no longer fits).",
    ["stage"],
)

# --- STS (tokens/sts.py) and credential reuse (tokens/services) ---------------------------------

STS_OUTCOMES = ("ok", "throttled", "refused", "unreachable", "timeout")
# STS's documented codes and the ones tokens/sts.py gives its own failures; any other is "other".
STS_CODES = frozenset(
    {
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "NoPermission",
        "EntityNotExist.Role",
        "InvalidParameter.RoleSessionName",
        "InvalidParameter.DurationSeconds",
        "InvalidParameter.PolicyGrammar",
        "InvalidParameter.PolicySize",
        "InvalidParameter.RoleArn",
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "SignatureDoesNotMatch",
        "InternalError",
        "ServiceUnavailable",
        "SDK.HttpError",
        "SDK.UnexpectedError",
        "InvalidResponse",
    }
)
STS_CALLS = Counter(
    "appserver_sts_assume_role_calls",
    "AssumeRole calls by outcome (ok, or the kind of failure).",
    ["outcome"],
)
STS_ERRORS = Counter(
    "appserver_sts_assume_role_errors",
    "Failed AssumeRole calls by kind and STS error code (other: a code not listed in "
    "docs/metrics.md; none: no code).",
    ["kind", "code"],
)
STS_DURATION = Histogram(
    "appserver_sts_assume_role_duration_seconds",
    "Duration of AssumeRole calls, failed ones included (bounded by STS_TIMEOUT_SECONDS).",
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
)
CREDENTIALS_SOURCES = ("cache", "sts")
CREDENTIALS_SERVED = Counter(
    "appserver_credentials_served",
    "STS credentials handed out, by source: cache (reused, from this worker or Redis) or sts "
    "(this request's own AssumeRole call).",
    ["source"],
)

# Series that exist from the start read 0 instead of "no data", so rate() and the alerts work
# before the first event; only small fixed label sets are created this way.
for _outcome in STS_OUTCOMES:
    STS_CALLS.labels(_outcome)
for _stage in QUOTA_STAGES:
    QUOTA_REFUSALS.labels(_stage)
_SERVED = {source: CREDENTIALS_SERVED.labels(source) for source in CREDENTIALS_SOURCES}
CALLBACKS.labels("accepted", "none")
CONFIRMATIONS.labels("accepted", "none")


def callback_observe(*, seconds: float, outcome: str, reason: str = "none") -> None:
    """One OSS callback answered after `seconds`."""
    CALLBACK_DURATION.observe(seconds)
    CALLBACKS.labels(outcome if outcome in CALLBACK_OUTCOMES else "other", _code(reason)).inc()
    if reason == "quota_exceeded" and outcome == "refused":
        QUOTA_REFUSALS.labels("callback").inc()


def confirmation_observe(*, outcome: str, reason: str = "none") -> None:
    """One confirmation answered (accepted, refused, or error with its error code)."""
    known = outcome in ("accepted", "refused", "error")
    CONFIRMATIONS.labels(outcome if known else "other", _code(reason)).inc()
    if reason == "quota_exceeded" and outcome == "refused":
        QUOTA_REFUSALS.labels("confirmation").inc()


def quota_refused(*, stage: str) -> None:
    QUOTA_REFUSALS.labels(stage if stage in QUOTA_STAGES else "other").inc()


def sts_call_observe(*, seconds: float, kind: str = "ok", code: str = "") -> None:
    """One AssumeRole call; `kind` is "ok" or the StsError's kind, `code` STS's error code."""
    STS_DURATION.observe(seconds)
    STS_CALLS.labels(kind if kind in STS_OUTCOMES else "other").inc()
    if kind != "ok":
        label = code if code in STS_CODES else ("none" if not code else "other")
        STS_ERRORS.labels(kind if kind in STS_OUTCOMES else "other", label).inc()


def credentials_served(*, source: str) -> None:
    """Credentials handed out from `source` ("cache" or "sts")."""
    _SERVED[source].inc()
