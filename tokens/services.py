"""Temporary STS credentials for end users, reused through the cache.

The contract (issue 2):

- One AssumeRole call per (user, scope) per lifetime window, shared by every worker process
  through the Django cache (Redis in production). AssumeRole is capped at ~100 calls/second per
  Alibaba account, so calling it per request would fall over long before Django does.
- Single flight: when many requests miss at once, one of them (per key, across processes: a
  ``cache.add`` lock; within a process: a striped thread lock) calls STS, the others wait briefly
  and read its result. If STS fails, the failure is remembered for a few seconds so the waiters
  (and the next requests) answer 503 at once instead of queueing more calls at a failing STS.
- Never handed out with less validity left than the SDKs' 300-second refresh margin plus
  ``CREDENTIALS_SAFETY_WINDOW_SECONDS``: the cache entry lives exactly until that moment, and the
  response's ``RefreshAfter`` names it, so a phone that refreshes then gets new credentials.
- The cache entry (one per user and scope) holds the SHA-256 of the policy it was issued for; a
  changed template, bucket or prefix makes it a miss, so stale grants are never served. The hash is
  checked inside the entry rather than put in the key so that ``credentials_forget_user`` can drop
  all of a user's entries with one ``delete_many`` over the known scopes, without an index.
- Entries are encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256) with
  ``CREDENTIALS_ENCRYPTION_KEY`` or a key derived from SECRET_KEY with HKDF; whoever reads Redis
  sees no secret, and an entry copied under another user's key is refused (user and scope are
  inside the encrypted payload).
- Ledger: every AssumeRole result is a CredentialGrant row. Hand-outs of cached credentials are
  counted in the worker's memory and written with one ``UPDATE ... SET times_served =
  times_served + n`` per grant at most every ``CREDENTIALS_SERVED_FLUSH_SECONDS`` (and when the
  worker exits): the hot path does no database write, at the price of losing at most that many
  seconds of counts if a worker is killed. 0 writes every hand-out at once (one UPDATE each).
- Hot path (warm cache): no Redis round trip while this worker's copy of the entry is younger
  than ``CREDENTIALS_LOCAL_SECONDS`` and it holds leased permits of the user's "credentials"
  rate (tokens.worker_copies); otherwise one round trip that both counts the request(s)
  against that rate and reads the entry (appserver.cache.RedisCache.incr_window), with a
  memoised decryption. No database write. Redis unreachable -> 503 ``cache_unavailable``:
  without the shared cache there is neither reuse nor single flight.
"""

from __future__ import annotations

import atexit
import base64
import ipaddress
import json
import logging
import math
import re
import secrets
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.cache import cache
from django.db.models import Case, F, IntegerField, Value, When
from django.utils import timezone
from redis.exceptions import RedisError
from rest_framework.settings import api_settings

from accounts.models import User
from appserver.errors import (
    AccountSuspended,
    InvalidInput,
    PermissionDenied,
    ServiceUnavailable,
    Throttled,
)
from policies.services import (
    ALL_SCOPES,
    PolicyTemplateError,
    RenderedPolicy,
    policy_for_user,
    scope_allowed_for,
)
from tokens.models import CredentialGrant
from tokens.sts import StsError, sts_assume_role
from tokens.worker_copies import WorkerCopies

logger = logging.getLogger(__name__)

# Android's and iOS's auth providers refresh this long before Expiration.
SDK_REFRESH_MARGIN_SECONDS = 300
# How long an STS failure is remembered per key: long enough to turn a stampede into one call,
# short enough that recovery shows within seconds.
FAILURE_MEMORY_SECONDS = 3
POLL_INTERVAL_SECONDS = 0.05
THROTTLE_SCOPE = "credentials"
_CACHE_VERSION = "v1"
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


@dataclass(frozen=True)
class _Entry:
    user_pk: int
    scope: str
    policy_sha256: str
    access_key_id: str
    access_key_secret: str
    security_token: str
    expiration: int  # unix seconds
    grant_id: int

    def refresh_at(self) -> float:
        return self.expiration - _margin_seconds()


def _margin_seconds() -> int:
    return SDK_REFRESH_MARGIN_SECONDS + settings.CREDENTIALS_SAFETY_WINDOW_SECONDS


# --- encryption at rest -------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _fernet_for(configured: str, secret_key: str) -> MultiFernet:
    if configured:
        keys = [Fernet(key.strip().encode()) for key in configured.split(",") if key.strip()]
    else:
        derived = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"appserver/tokens",
            info=b"credentials-cache/v1",
        ).derive(secret_key.encode())
        keys = [Fernet(base64.urlsafe_b64encode(derived))]
    return MultiFernet(keys)


def _fernet() -> MultiFernet:
    return _fernet_for(settings.CREDENTIALS_ENCRYPTION_KEY, settings.SECRET_KEY)


def _seal(entry: _Entry) -> str:
    payload = json.dumps(entry.__dict__, separators=(",", ":")).encode()
    return _fernet().encrypt(payload).decode("ascii")


@lru_cache(maxsize=2048)
def _decrypt(raw: str, fernet: MultiFernet) -> _Entry | None:
    # Memoised on the exact ciphertext (and key set): an entry is read on every request of its
    # window, and decrypting it again each time is a fifth of the hot path's own work. Only the
    # ciphertext Redis returns can reach a memoised entry, so a deleted entry stays gone.
    try:
        return _Entry(**json.loads(fernet.decrypt(raw.encode("ascii"))))
    except (InvalidToken, ValueError, TypeError):
        # Rotated key or foreign value: a miss, never an error.
        return None


def _open(raw: object, *, user_pk: int, scope: str) -> _Entry | None:
    if not isinstance(raw, str):
        return None
    entry = _decrypt(raw, _fernet())
    if entry is None or entry.user_pk != user_pk or entry.scope != scope:
        return None
    return entry


# --- cache keys and locks -----------------------------------------------------------------------


def _entry_key(user_pk: int, scope: str) -> str:
    return f"tokens:{_CACHE_VERSION}:creds:{user_pk}:{scope}"


# Striped so that memory stays bounded however many users there are.
_LOCAL_LOCKS = tuple(threading.Lock() for _ in range(64))


def _local_lock(key: str) -> threading.Lock:
    return _LOCAL_LOCKS[zlib.crc32(key.encode()) % len(_LOCAL_LOCKS)]


def session_name_for(*, user: User) -> str:
    """RoleSessionName: shows up in ActionTrail, so it names the user by public id (never the
    username); 2-64 characters of [A-Za-z0-9.@_-]."""
    return _SESSION_NAME_CHARS.sub("", f"app-{user.public_id}")[:64]


# --- the service --------------------------------------------------------------------------------


def _fresh(key: str, *, user_pk: int, scope: str, policy: RenderedPolicy) -> _Entry | None:
    return _fresh_from(cache.get(key), user_pk=user_pk, scope=scope, policy=policy)


def _fresh_from(raw: object, *, user_pk: int, scope: str, policy: RenderedPolicy) -> _Entry | None:
    entry = _open(raw, user_pk=user_pk, scope=scope)
    return entry if entry is not None and _usable(entry, policy=policy) else None


def _usable(entry: _Entry, *, policy: RenderedPolicy) -> bool:
    """Issued for this very policy, and not yet due for refresh."""
    return entry.policy_sha256 == policy.sha256 and time.time() < entry.refresh_at()


def _issued(
    entry: _Entry, *, policy: RenderedPolicy, scope: str, reused: bool
) -> IssuedCredentials:
    now = timezone.now()
    expiration = datetime.fromtimestamp(entry.expiration, UTC)
    return IssuedCredentials(
        access_key_id=entry.access_key_id,
        access_key_secret=entry.access_key_secret,
        security_token=entry.security_token,
        expiration=expiration,
        refresh_after=max(expiration - timedelta(seconds=_margin_seconds()), now),
        server_time=now,
        bucket=policy.bucket,
        region=settings.OSS_REGION,
        endpoint=settings.OSS_PUBLIC_ENDPOINT,
        prefix=policy.prefix or "",
        scope=scope,
        grant_id=entry.grant_id,
        reused=reused,
    )


class _ServedCounter:
    """Hand-outs per grant, kept in this process and flushed to the ledger in batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, int] = {}
        self._last_flush = time.monotonic()

    def add(self, grant_id: int) -> None:
        interval = settings.CREDENTIALS_SERVED_FLUSH_SECONDS
        with self._lock:
            self._pending[grant_id] = self._pending.get(grant_id, 0) + 1
            due = time.monotonic() - self._last_flush >= interval
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        now = timezone.now()
        items = sorted(pending.items())  # a fixed order: concurrent flushes never deadlock
        for start in range(0, len(items), 500):
            chunk = items[start : start + 500]
            # One statement per chunk: a CASE adds each grant's own count.
            increment = Case(
                *(When(pk=grant_id, then=Value(count)) for grant_id, count in chunk),
                output_field=IntegerField(),
            )
            CredentialGrant.objects.filter(pk__in=[grant_id for grant_id, _ in chunk]).update(
                times_served=F("times_served") + increment, last_served_at=now
            )


_served = _ServedCounter()
_copies = WorkerCopies()


def _copies_on() -> bool:
    # Only in front of Redis: the local-memory cache is this process's memory already.
    return settings.CREDENTIALS_LOCAL_SECONDS > 0 and hasattr(cache, "incr_window")


def credentials_forget_local_copies() -> None:
    """Drop this worker's copies and permits (tests and operators' shells; the copies of a
    suspended user are dropped everywhere by the epoch, see credentials_forget_user)."""
    _copies.clear()


def credentials_flush_served_counts() -> None:
    """Write the hand-outs counted in this process to the ledger now."""
    _served.flush()


def _flush_at_exit() -> None:
    try:
        _served.flush()
    except Exception:  # the database may be gone at shutdown: counts are best effort
        logger.warning("Could not write the last credential hand-out counts to the ledger.")


atexit.register(_flush_at_exit)


def _serve_cached(entry: _Entry, *, policy: RenderedPolicy, scope: str) -> IssuedCredentials:
    _served.add(entry.grant_id)
    return _issued(entry, policy=policy, scope=scope, reused=True)


def _unavailable(kind: str) -> ServiceUnavailable:
    code, retry_after, message = _FAILURES.get(kind, _FAILURES["unreachable"])
    return ServiceUnavailable(message, code=code, retry_after=retry_after)


def _valid_ip(text: str | None) -> str | None:
    # Behind proxies the address comes from X-Forwarded-For: whatever a client put there must
    # not break the ledger's inet column.
    try:
        return str(ipaddress.ip_address((text or "").strip()))
    except ValueError:
        return None


def _call_sts(
    *,
    user: User,
    scope: str,
    policy: RenderedPolicy,
    key: str,
    client_ip: str | None,
    user_agent: str,
) -> _Entry:
    credentials = sts_assume_role(
        role_arn=settings.STS_ROLE_ARN,
        policy=policy.text,
        session_name=session_name_for(user=user),
        duration_seconds=settings.STS_DURATION_SECONDS,
    )
    grant = CredentialGrant.objects.create(
        user=user,
        scope=scope,
        bucket=policy.bucket,
        prefix=policy.prefix or "",
        policy_sha256=policy.sha256,
        access_key_id=credentials.access_key_id,
        expiration=credentials.expiration,
        sts_request_id=credentials.request_id[:64],
        client_ip=_valid_ip(client_ip),
        user_agent=(user_agent or "")[:512],
        times_served=1,
        last_served_at=timezone.now(),
    )
    entry = _Entry(
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
            _margin_seconds(),
        )
        return entry
    cache.set(key, _seal(entry), timeout=ttl)
    # A suspension that landed while STS was answering must not leave a usable entry behind.
    if User.objects.filter(pk=user.pk, is_suspended=True).exists():
        cache.delete(key)
    return entry


def _issue_single_flight(
    *,
    user: User,
    scope: str,
    policy: RenderedPolicy,
    key: str,
    client_ip: str | None,
    user_agent: str,
) -> tuple[_Entry, bool]:
    """The entry to hand out and whether it was reused (False: this request called STS)."""
    lock_key, failure_key = f"{key}:lock", f"{key}:failed"
    sts_timeout = float(settings.STS_TIMEOUT_SECONDS)
    # The holder's STS call is bounded by the connect + read timeouts; the lock outlives it a
    # little, and expires on its own if the holder's process dies.
    lock_ttl = int(2 * sts_timeout) + 5
    deadline = time.monotonic() + lock_ttl + 1
    local = _local_lock(key)
    if not local.acquire(timeout=lock_ttl + 1):
        raise _unavailable("timeout")
    try:
        while True:
            entry = _fresh(key, user_pk=user.pk, scope=scope, policy=policy)
            if entry is not None:
                return entry, True
            failed = cache.get(failure_key)
            if isinstance(failed, str):
                raise _unavailable(failed)
            token = secrets.token_hex(8)
            if cache.add(lock_key, token, timeout=lock_ttl):
                try:
                    entry = _fresh(key, user_pk=user.pk, scope=scope, policy=policy)
                    if entry is not None:
                        return entry, True
                    try:
                        entry = _call_sts(
                            user=user,
                            scope=scope,
                            policy=policy,
                            key=key,
                            client_ip=client_ip,
                            user_agent=user_agent,
                        )
                    except StsError as exc:
                        cache.set(failure_key, exc.kind, timeout=FAILURE_MEMORY_SECONDS)
                        raise _unavailable(exc.kind) from None
                    return entry, False
                finally:
                    if cache.get(lock_key) == token:
                        cache.delete(lock_key)
            if time.monotonic() >= deadline:
                raise _unavailable("timeout")
            time.sleep(POLL_INTERVAL_SECONDS)
    finally:
        local.release()


_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _rate() -> tuple[int, int] | None:
    """The "credentials" throttle rate (REST_FRAMEWORK's DEFAULT_THROTTLE_RATES), read now."""
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(THROTTLE_SCOPE)
    if not rate:
        return None
    count, period = rate.split("/")
    return int(count), _PERIODS[period[0]]


def _count_request_and_fetch(
    *, user_pk: int, key: str, rate: tuple[int, int] | None, copies: bool
) -> object:
    """Count the request against the user's rate and read the cached entry: one Redis round trip.

    The endpoint's per-user throttle lives here rather than in a DRF throttle class so that the
    hottest path of the server costs one round trip, not three (a DRF throttle reads and
    writes its request log, then the entry is read). It is a fixed window that starts with the
    user's first request; over the rate -> 429 with the seconds left in the window. With Redis
    and worker copies on (`copies`), requests are counted in leases (tokens.worker_copies).
    """
    if rate is None:
        return cache.get(key)
    limit, window = rate
    counter_key = f"throttle_{THROTTLE_SCOPE}_{user_pk}"
    incr_window = getattr(cache, "incr_window", None)
    if incr_window is not None:  # appserver.cache.RedisCache
        now = time.monotonic()
        leased = _copies.claim(user_pk=user_pk, limit=limit, now=now) if copies else 1
        hits, seconds_left, values = incr_window(counter_key, window, amount=leased, get_keys=[key])
        allowed = (
            _copies.settle(
                user_pk=user_pk,
                leased=leased,
                hits=hits,
                seconds_left=seconds_left,
                limit=limit,
                now=now,
            )
            if copies
            else hits <= limit
        )
        raw = values.get(key)
    else:  # the embedded default's local-memory cache: same rule, several operations
        cache.add(counter_key, 0, timeout=window)
        try:
            hits = cache.incr(counter_key)
        except ValueError:  # the window ended between add and incr
            cache.set(counter_key, 1, timeout=window)
            hits = 1
        allowed, seconds_left, raw = hits <= limit, window, cache.get(key)
    if not allowed:
        retry_after = max(1, math.ceil(seconds_left))
        raise Throttled(
            f"Too many credential requests. Retry in {retry_after} seconds.",
            retry_after=retry_after,
        )
    return raw


def credentials_for_user(
    *, user: User, scope: str, client_ip: str | None, user_agent: str
) -> IssuedCredentials:
    """Credentials confined by `scope`'s session policy for `user`; reused while fresh enough.

    Raises AccountSuspended, InvalidInput (unknown scope), PermissionDenied (a bucket-wide scope
    for a non-staff user), Throttled (the user's "credentials" rate) or ServiceUnavailable (STS
    failed; the code says how).
    """
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
        policy = policy_for_user(user=user, scope=scope)
    except PolicyTemplateError as exc:
        logger.error("Cannot render the session policy: %s", exc)
        raise ServiceUnavailable(
            "The credentials service is misconfigured. Retry later.",
            code="policy_unavailable",
            retry_after=60,
        ) from None
    key = _entry_key(user.pk, scope)
    epoch = user.credentials_epoch
    rate, copies = _rate(), _copies_on()
    try:
        if copies:
            entry = _copies.serve(
                user_pk=user.pk,
                epoch=epoch,
                scope=scope,
                now=time.monotonic(),
                max_age=settings.CREDENTIALS_LOCAL_SECONDS,
                metered=rate is not None,
                usable=lambda candidate: _usable(candidate, policy=policy),
            )
            if entry is not None:
                return _serve_cached(entry, policy=policy, scope=scope)
        raw = _count_request_and_fetch(user_pk=user.pk, key=key, rate=rate, copies=copies)
        entry = _fresh_from(raw, user_pk=user.pk, scope=scope, policy=policy)
        reused = True
        if entry is None:
            entry, reused = _issue_single_flight(
                user=user,
                scope=scope,
                policy=policy,
                key=key,
                client_ip=client_ip,
                user_agent=user_agent,
            )
        if copies:
            _copies.remember(
                user_pk=user.pk, epoch=epoch, scope=scope, entry=entry, now=time.monotonic()
            )
        if reused:
            return _serve_cached(entry, policy=policy, scope=scope)
        return _issued(entry, policy=policy, scope=scope, reused=False)
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
    # The new epoch voids every worker's copies: each request re-reads the user row.
    User.objects.filter(pk=user.pk).update(credentials_epoch=F("credentials_epoch") + 1)
    user.refresh_from_db(fields=["credentials_epoch"])
    keys = [_entry_key(user.pk, scope) for scope in ALL_SCOPES]
    cache.delete_many(keys + [f"{key}:failed" for key in keys])


def credentials_cache_key(*, user: User, scope: str) -> str:
    """The cache key of a user's entry (for operators' tooling and tests)."""
    return _entry_key(user.pk, scope)
