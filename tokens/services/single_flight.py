"""One AssumeRole call per (user, scope, policy) per lifetime window, however many requests miss.

AssumeRole is capped at ~100 calls/second per Alibaba account, so calling it per request would
fall over long before Django does. When many requests miss at once, one of them (per key, across
processes: redis-py's token-checked Lock; within a process: a lock of that key alone) calls STS,
the others wait briefly and read its result; requests for other keys never wait behind it. If
STS fails, the failure is remembered for a few seconds so the waiters (and the next requests)
answer 503 at once instead of queueing more calls at a failing STS.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import LockNotOwnedError

from accounts.models import User
from appserver.errors import ServiceUnavailable
from policies.services import RenderedPolicy
from tokens.services.keys import failure_key, local_locks, lock_key
from tokens.services.ledger import grant_record
from tokens.services.sealing import (
    CachedEntry,
    entry_seal,
    entry_unseal_current,
    refresh_margin_seconds,
)
from tokens.sts import StsError, sts_assume_role

logger = logging.getLogger(__name__)

# How long an STS failure is remembered per key: long enough to turn a stampede into one call,
# short enough that recovery shows within seconds.
FAILURE_MEMORY_SECONDS = 3
POLL_INTERVAL_SECONDS = 0.05
_SESSION_NAME_CHARS = re.compile(r"[^A-Za-z0-9.@_-]")

# Seconds a client should wait, and the code it gets, per kind of STS failure.
_FAILURES = {
    "throttled": (
        "sts_throttled",
        2,
        "Too many credential requests are reaching STS right now. Retry in a few seconds.",
    ),
    "timeout": ("sts_timeout", 5, "STS did not answer in time. Retry later."),
    "unreachable": (
        "sts_unavailable",
        5,
        "Temporary credentials cannot be issued right now. Retry later.",
    ),
    "refused": (
        "sts_refused",
        60,
        "The credentials service is misconfigured and cannot issue credentials. Retry later.",
    ),
}


def _unavailable(kind: str) -> ServiceUnavailable:
    code, retry_after, message = _FAILURES.get(kind, _FAILURES["unreachable"])
    return ServiceUnavailable(message, code=code, retry_after=retry_after)


def session_name_for(*, user: User) -> str:
    """RoleSessionName: shows up in ActionTrail, so it names the user by public id (never the
    username); 2-64 characters of [A-Za-z0-9.@_-]."""
    return _SESSION_NAME_CHARS.sub("", f"app-{user.public_id}")[:64]


def entry_issue_from_sts(
    *,
    user: User,
    scope: str,
    policy: RenderedPolicy,
    key: str,
    client_ip: str | None,
    user_agent: str,
) -> CachedEntry:
    """Call AssumeRole, record the grant in the ledger and cache the sealed entry under `key`."""
    credentials = sts_assume_role(
        role_arn=settings.STS_ROLE_ARN,
        policy=policy.text,
        session_name=session_name_for(user=user),
        duration_seconds=settings.STS_DURATION_SECONDS,
    )
    grant = grant_record(
        user=user,
        scope=scope,
        policy=policy,
        credentials=credentials,
        client_ip=client_ip,
        user_agent=user_agent,
    )
    entry = CachedEntry(
        user_pk=user.pk,
        scope=scope,
        policy_sha256=policy.sha256,
        access_key_id=credentials.access_key_id,
        access_key_secret=credentials.access_key_secret,
        security_token=credentials.security_token,
        expiration=int(credentials.expiration.timestamp()),
        grant_id=grant.pk,
    )
    ttl = int(entry.refresh_at() - time.time())
    if ttl <= 0:
        # Handed out this once (they are the freshest there are) but never reused.
        logger.warning(
            "STS returned credentials valid for less than the %d s refresh margin: check "
            "STS_DURATION_SECONDS, CREDENTIALS_SAFETY_WINDOW_SECONDS and the server clock.",
            refresh_margin_seconds(),
        )
        return entry
    cache.set(key, entry_seal(entry), timeout=ttl)
    # A suspension that landed while STS was answering must not leave a usable entry behind.
    if User.objects.filter(pk=user.pk, is_suspended=True).exists():
        cache.delete(key)
    return entry


def _read_current(
    key: str, *, user_pk: int, scope: str, policy: RenderedPolicy
) -> CachedEntry | None:
    # From the primary where the cache can say so: a read replica (read/write splitting) may
    # not have the entry another worker has just written, and a miss here calls STS again.
    read = getattr(cache, "get_from_primary", cache.get)
    return entry_unseal_current(read(key), user_pk=user_pk, scope=scope, policy=policy)


@contextmanager
def _fleet_lock(key: str, *, ttl: float) -> Iterator[bool]:
    """Yields whether this request holds the fleet's lock on `key` (for at most `ttl` seconds).

    In Redis: redis-py's Lock, released only by the token that took it (one script), so a
    holder whose lock expired cannot delete the next holder's. The local-memory cache is this
    process's own: the per-key thread lock already held is the whole fleet's.
    """
    make_lock = getattr(cache, "lock", None)
    if make_lock is None:
        yield True
        return
    lock = make_lock(lock_key(key), timeout=ttl)
    if not lock.acquire(blocking=False):
        yield False
        return
    try:
        yield True
    finally:
        try:
            lock.release()
        except LockNotOwnedError:
            logger.warning(
                "The STS lock of a credentials entry expired before its holder finished: "
                "another request may have called STS for it too."
            )


def entry_issue_single_flight(
    *,
    user: User,
    scope: str,
    policy: RenderedPolicy,
    key: str,
    client_ip: str | None,
    user_agent: str,
) -> tuple[CachedEntry, bool]:
    """The entry to hand out and whether it was reused (False: this request called STS)."""
    failed_key = failure_key(key)
    sts_timeout = float(settings.STS_TIMEOUT_SECONDS)
    # The holder's STS call is bounded by the connect + read timeouts; the lock outlives it a
    # little, and expires on its own if the holder's process dies.
    lock_ttl = int(2 * sts_timeout) + 5
    deadline = time.monotonic() + lock_ttl + 1
    # This worker's requests for the same key wait here; other keys never do.
    with local_locks.held(key, timeout=lock_ttl + 1) as acquired:
        if not acquired:
            raise _unavailable("timeout")
        while True:
            entry = _read_current(key, user_pk=user.pk, scope=scope, policy=policy)
            if entry is not None:
                return entry, True
            failed = cache.get(failed_key)
            if isinstance(failed, str):
                raise _unavailable(failed)
            with _fleet_lock(key, ttl=lock_ttl) as held:
                if held:
                    entry = _read_current(key, user_pk=user.pk, scope=scope, policy=policy)
                    if entry is not None:
                        return entry, True
                    try:
                        entry = entry_issue_from_sts(
                            user=user,
                            scope=scope,
                            policy=policy,
                            key=key,
                            client_ip=client_ip,
                            user_agent=user_agent,
                        )
                    except StsError as exc:
                        cache.set(failed_key, exc.kind, timeout=FAILURE_MEMORY_SECONDS)
                        raise _unavailable(exc.kind) from None
                    return entry, False
            if time.monotonic() >= deadline:
                raise _unavailable("timeout")
            time.sleep(POLL_INTERVAL_SECONDS)
