"""The ledger: every AssumeRole result is a CredentialGrant row, and hand-outs are counted on it.

Hand-outs of cached credentials are counted in the worker's memory and written with one
``UPDATE ... SET times_served = times_served + n`` per grant at most every
``CREDENTIALS_SERVED_FLUSH_SECONDS`` (and when the worker exits): the hot path does no database
write, at the price of losing at most that many seconds of counts if a worker is killed. 0 writes
every hand-out at once (one UPDATE each).
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import threading
import time
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Case, F, IntegerField, Value, When
from django.utils import timezone

from accounts.models import User
from policies.services import RenderedPolicy
from tokens.models import CredentialGrant
from tokens.sts import StsCredentials

logger = logging.getLogger(__name__)

# Grants with counts waiting; beyond it (the database away for long) the counts are dropped.
_MAX_PENDING = 100_000


def _valid_ip(text: str | None) -> str | None:
    # Behind proxies the address comes from X-Forwarded-For: whatever a client put there must
    # not break the ledger's inet column.
    try:
        return str(ipaddress.ip_address((text or "").strip()))
    except ValueError:
        return None


def grant_record(
    *,
    user: User,
    scope: str,
    policy: RenderedPolicy,
    credentials: StsCredentials,
    client_ip: str | None,
    user_agent: str,
) -> CredentialGrant:
    """The ledger row of one AssumeRole result, counted as handed out once."""
    return CredentialGrant.objects.create(
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


class ServedCounter:
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
            try:
                self.flush()
            except DatabaseError:
                # The credentials were handed out from the cache, which needs no database: the
                # counts wait for the next flush rather than cost the answer.
                logger.warning("Credential hand-out counts not written yet (database error).")

    def discard(self) -> None:
        """Forget the counts not written yet (tests: the grants they name were rolled back)."""
        with self._lock:
            self._pending = {}

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        now = timezone.now()
        items = sorted(pending.items())  # a fixed order: concurrent flushes never deadlock
        for start in range(0, len(items), 500):
            chunk = items[start : start + 500]
            try:
                self._write(chunk, now)
            except DatabaseError:
                self._keep(items[start:])
                raise

    def _keep(self, items: list[tuple[int, int]]) -> None:
        """Put counts that could not be written back, for the next flush."""
        with self._lock:
            for grant_id, count in items:
                self._pending[grant_id] = self._pending.get(grant_id, 0) + count
            if len(self._pending) > _MAX_PENDING:  # the database gone for long: stop growing
                self._pending.clear()

    @staticmethod
    def _write(chunk: list[tuple[int, int]], now: datetime) -> None:
        # One statement per chunk: a CASE adds each grant's own count.
        increment = Case(
            *(When(pk=grant_id, then=Value(count)) for grant_id, count in chunk),
            output_field=IntegerField(),
        )
        CredentialGrant.objects.filter(pk__in=[grant_id for grant_id, _ in chunk]).update(
            times_served=F("times_served") + increment, last_served_at=now
        )


served_counter = ServedCounter()


def _flush_at_exit() -> None:
    try:
        served_counter.flush()
    except Exception:  # the database may be gone at shutdown: counts are best effort
        logger.warning("Could not write the last credential hand-out counts to the ledger.")


atexit.register(_flush_at_exit)
