"""Temporary STS credentials for end users, reused through the cache: the service itself.

What a caller can rely on (the parts live in the sibling modules):

- One AssumeRole call per (user, scope) per lifetime window, shared by every worker process
  through the Django cache (Redis in production): single_flight.
- Never handed out with less validity left than the SDKs' 300-second refresh margin plus
  ``CREDENTIALS_SAFETY_WINDOW_SECONDS``: the cache entry lives exactly until that moment, and the
  response's ``RefreshAfter`` names it, so a phone that refreshes then gets new credentials.
- Entries are encrypted at rest and bound to their user, scope and policy: sealing.
- Every AssumeRole result is a ledger row; hand-outs are counted in batches: ledger.
- Hot path (warm cache): one Redis round trip that both counts the request against the user's
  "credentials" rate and reads the entry (rate), with a memoised decryption; unmetered requests
  are served from this worker's copy while it is younger than ``CREDENTIALS_LOCAL_SECONDS``
  (tokens.worker_copies). No database write. Redis unreachable -> 503 ``cache_unavailable``:
  without the shared cache there is neither reuse nor single flight.
- Keys name the user's credentials epoch and the release's policy, role and sealing key (keys):
  a rolling deploy that changes any of them keeps one entry per release, and a suspension voids
  every older entry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from accounts.models import User
from appserver import metrics
from appserver.errors import AccountSuspended, InvalidInput, PermissionDenied, ServiceUnavailable
from policies.services import (
    ALL_SCOPES,
    PolicyTemplateError,
    RenderedPolicy,
    policy_for_user,
    scope_allowed_for,
)
from tokens.services.keys import entry_key, failure_key
from tokens.services.ledger import served_counter
from tokens.services.rate import (
    credentials_rate,
    request_count_and_read,
    worker_copies,
    worker_copies_enabled,
)
from tokens.services.sealing import (
    CachedEntry,
    entry_is_current,
    entry_unseal_current,
    entry_version,
    refresh_margin_seconds,
)
from tokens.services.single_flight import entry_issue_single_flight

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssuedCredentials:
    access_key_id: str
    access_key_secret: str
    security_token: str
    expiration: datetime
    refresh_after: datetime
    server_time: datetime
    bucket: str
    region: str
    endpoint: str
    prefix: str
    scope: str
    grant_id: int
    reused: bool

    def __repr__(self) -> str:  # never print the secret or the token by accident
        return (
            f"IssuedCredentials(access_key_id={self.access_key_id!r}, scope={self.scope!r}, "
            f"expiration={self.expiration.isoformat()}, reused={self.reused})"
        )


def _issued_credentials_from(
    entry: CachedEntry, *, policy: RenderedPolicy, scope: str, reused: bool
) -> IssuedCredentials:
    now = timezone.now()
    expiration = datetime.fromtimestamp(entry.expiration, UTC)
    return IssuedCredentials(
        access_key_id=entry.access_key_id,
        access_key_secret=entry.access_key_secret,
        security_token=entry.security_token,
        expiration=expiration,
        refresh_after=max(expiration - timedelta(seconds=refresh_margin_seconds()), now),
        server_time=now,
        bucket=policy.bucket,
        region=settings.OSS_REGION,
        endpoint=settings.OSS_PUBLIC_ENDPOINT,
        prefix=policy.prefix or "",
        scope=scope,
        grant_id=entry.grant_id,
        reused=reused,
    )


def _hand_out_cached(
    entry: CachedEntry, *, policy: RenderedPolicy, scope: str
) -> IssuedCredentials:
    served_counter.add(entry.grant_id)
    metrics.credentials_served(source="cache")
    return _issued_credentials_from(entry, policy=policy, scope=scope, reused=True)


def _policy_checked(*, user: User, scope: str) -> RenderedPolicy:
    if user.is_suspended:
        raise AccountSuspended()
    if scope not in ALL_SCOPES:
        raise InvalidInput(
            f"Unknown scope {scope!r}.",
            code="invalid_scope",
            fields={"scope": [f"Use one of: {', '.join(ALL_SCOPES)}."]},
        )
    if not scope_allowed_for(scope=scope, is_staff=user.is_staff, is_superuser=user.is_superuser):
        raise PermissionDenied(
            f"The scope {scope!r} covers the whole bucket and is for staff only.",
            code="scope_not_allowed",
        )
    try:
        return policy_for_user(user=user, scope=scope)
    except PolicyTemplateError as exc:
        logger.error("Cannot render the session policy: %s", exc)
        raise ServiceUnavailable(
            "The credentials service is misconfigured. Retry later.",
            code="policy_unavailable",
            retry_after=60,
        ) from None


def credentials_issue(
    *, user: User, scope: str, client_ip: str | None, user_agent: str, metered: bool = True
) -> IssuedCredentials:
    """Credentials confined by `scope`'s session policy for `user`; reused while fresh enough.

    `metered=False` skips the user's "credentials" rate: for the server's own use of the
    credentials (signing upload URLs and forms), which its caller rate-limits itself.

    Raises AccountSuspended, InvalidInput (unknown scope), PermissionDenied (a bucket-wide scope
    for a non-staff user), Throttled (the user's "credentials" rate) or ServiceUnavailable (STS
    failed; the code says how).
    """
    policy = _policy_checked(user=user, scope=scope)
    epoch = user.credentials_epoch
    key = entry_key(user.pk, epoch, scope, entry_version(policy))
    rate, copies = (credentials_rate() if metered else None), worker_copies_enabled()
    try:
        if copies and rate is None:
            entry = worker_copies.serve(
                user_pk=user.pk,
                epoch=epoch,
                scope=scope,
                now=time.monotonic(),
                max_age=settings.CREDENTIALS_LOCAL_SECONDS,
                usable=lambda candidate: entry_is_current(candidate, policy=policy),
            )
            if entry is not None:
                return _hand_out_cached(entry, policy=policy, scope=scope)
        raw = request_count_and_read(user_pk=user.pk, key=key, rate=rate)
        entry = entry_unseal_current(raw, user_pk=user.pk, scope=scope, policy=policy)
        reused = True
        if entry is None:
            entry, reused = entry_issue_single_flight(
                user=user,
                scope=scope,
                policy=policy,
                key=key,
                client_ip=client_ip,
                user_agent=user_agent,
            )
        if copies:
            worker_copies.remember(
                user_pk=user.pk, epoch=epoch, scope=scope, entry=entry, now=time.monotonic()
            )
        if reused:
            return _hand_out_cached(entry, policy=policy, scope=scope)
        metrics.credentials_served(source="sts")
        return _issued_credentials_from(entry, policy=policy, scope=scope, reused=False)
    except RedisError as exc:
        # Without the shared cache there is no reuse and no single flight: calling STS per
        # request would hit its account-wide rate limit, so refuse until Redis is back.
        logger.error("The cache is unavailable for credentials: %s", type(exc).__name__)
        raise ServiceUnavailable(
            "Temporary credentials cannot be issued right now. Retry later.",
            code="cache_unavailable",
            retry_after=5,
        ) from None


def credentials_forget_user(*, user: User) -> None:
    """Drop every cached credential of the user, all scopes (called when the user is suspended).

    Credentials already handed out stay valid at Alibaba until they expire (STS cannot revoke a
    single session); what stops is the server handing them out again.
    """
    # The new epoch voids every worker's copies and every entry in Redis, whatever policy version
    # wrote it: their keys name the old epoch, and each request re-reads the user row.
    User.objects.filter(pk=user.pk).update(credentials_epoch=F("credentials_epoch") + 1)
    user.refresh_from_db(fields=["credentials_epoch"])
    # Unreachable now; those of this version's policies are dropped at once rather than left to
    # expire (all of one user's keys share a hash slot: one command, even on a cluster).
    keys = [
        entry_key(user.pk, user.credentials_epoch - 1, scope, entry_version(policy))
        for scope, policy in _current_policies(user)
    ]
    if keys:
        cache.delete_many(keys + [failure_key(key) for key in keys])


def _current_policies(user: User) -> list[tuple[str, RenderedPolicy]]:
    policies = []
    for scope in ALL_SCOPES:
        try:
            policies.append((scope, policy_for_user(user=user, scope=scope)))
        except PolicyTemplateError:
            continue  # never issued under a template that does not render
    return policies


def credentials_forget_local_copies() -> None:
    """Drop this worker's copies (tests and operators' shells; the copies of a
    suspended user are dropped everywhere by the epoch, see credentials_forget_user)."""
    worker_copies.clear()


def credentials_flush_served_counts() -> None:
    """Write the hand-outs counted in this process to the ledger now."""
    served_counter.flush()


def credentials_cache_key(*, user: User, scope: str) -> str:
    """The cache key of a user's entry for this server's policy and the user's epoch as loaded
    (for operators' tooling and tests)."""
    policy = policy_for_user(user=user, scope=scope)
    return entry_key(user.pk, user.credentials_epoch, scope, entry_version(policy))
