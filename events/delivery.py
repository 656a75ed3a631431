"""The worker's steps: fan new events out into deliveries, then post the due ones.

Order: deliveries form lines, one per (endpoint, user), in event order. A delivery is posted
only when every earlier pending one of its line has been delivered (or parked): a failing event
holds back that user's later events for that endpoint, and nobody else's.

Several workers: each claims due deliveries with FOR UPDATE SKIP LOCKED, keeps of each line only
a claim that starts at the line's first pending delivery and has no gap, and holds the row locks
until it has posted them and committed the outcomes; so one line is never posted by two workers
at once, nor out of order. A worker killed mid-delivery rolls back: the rows are claimable again
and are posted again (at least once; receivers de-duplicate on the event id).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from events import metrics
from events.addresses import AddressRefused, Target, target_resolve
from events.models import Delivery, Event, WebhookEndpoint
from events.secrets import SecretUnreadable, secret_open
from events.signing import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, signature
from events.transport import Response, post

logger = logging.getLogger(__name__)

Pending = Delivery.State.PENDING
_FAN_OUT_LOCK = 0x45564E54  # "EVNT": the advisory lock key of the fan-out


@dataclass
class RoundResult:
    delivered: int = 0
    retrying: int = 0
    parked: int = 0
    claimed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, outcome: str) -> None:
        with self.lock:
            setattr(self, outcome, getattr(self, outcome) + 1)

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.parked


# The fan-out in one statement (PostgreSQL): mark up to `limit` events dispatched and insert
# their deliveries (the same rules as the ORM version below, which SQLite runs).
_FAN_OUT_SQL = """
WITH batch AS (
    SELECT id FROM events_event WHERE NOT dispatched ORDER BY id LIMIT %(limit)s
), marked AS (
    UPDATE events_event e SET dispatched = true FROM batch WHERE e.id = batch.id
    RETURNING e.id, e.type, e.user_public_id, e.occurred_at
), inserted AS (
    INSERT INTO events_delivery (
        event_id, endpoint_id, user_public_id, state, attempts, next_attempt_at, last_error,
        created_at
    )
    SELECT m.id, w.id, m.user_public_id, %(pending)s, 0, now(), '', now()
    FROM marked m JOIN events_webhookendpoint w
        ON w.active AND w.created_at <= m.occurred_at
        AND (w.event_types = '[]'::jsonb OR w.event_types ? m.type)
    ON CONFLICT (event_id, endpoint_id) DO NOTHING
)
SELECT count(*) FROM marked
"""


def events_fan_out(*, limit: int = 500) -> int:
    """Create the deliveries of events not yet dispatched (to the endpoints active now that
    want them and existed when the event occurred); returns the events dispatched."""
    with transaction.atomic():
        # One fan-out at a time: with two, a later event of a user could get its delivery (and
        # be posted) before an earlier one that the other fan-out holds is given its own.
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_FAN_OUT_LOCK])
                if not cursor.fetchone()[0]:
                    return 0
                cursor.execute(_FAN_OUT_SQL, {"limit": limit, "pending": Pending.value})
                return cursor.fetchone()[0]
        events = list(
            Event.objects.filter(dispatched=False)
            .order_by("id")
            .select_for_update(skip_locked=True)
            .only("id", "type", "user_public_id", "occurred_at")[:limit]
        )
        if not events:
            return 0
        endpoints = list(WebhookEndpoint.objects.filter(active=True))
        now = timezone.now()
        Delivery.objects.bulk_create(
            [
                Delivery(
                    event_id=event.pk,
                    endpoint_id=endpoint.pk,
                    user_public_id=event.user_public_id,
                    next_attempt_at=now,
                )
                for event in events
                for endpoint in endpoints
                if endpoint.wants(event.type) and event.occurred_at >= endpoint.created_at
            ],
            ignore_conflicts=True,  # a replay may have created one already
        )
        Event.objects.filter(pk__in=[e.pk for e in events]).update(dispatched=True)
    return len(events)


def payload(event: Event) -> bytes:
    """The body receivers get (docs/events.md)."""
    document = {
        "id": str(event.uid),
        "type": event.type,
        "created_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "user": event.user_public_id,
        "data": event.data,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def retry_delay(attempts: int) -> float:
    """Exponential backoff with jitter: base * 2^(attempts-1), capped, then a random half of
    it added to half of it (so retries of many events spread out)."""
    base = settings.EVENTS_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)
    delay = min(settings.EVENTS_RETRY_MAX_SECONDS, base)
    return delay / 2 + random.uniform(0, delay / 2)


@dataclass
class _Round:
    """What one round learns once per endpoint: its secret, and its checked address."""

    secrets: dict[int, str]
    targets: dict[int, Target | str]  # a Target, or why the address is refused


def _prepare(endpoint: WebhookEndpoint, known: _Round) -> None:
    """The endpoint's secret and checked address, once per round (before any thread posts)."""
    if endpoint.pk in known.targets:
        return
    try:
        known.secrets[endpoint.pk] = secret_open(endpoint.secret_sealed)
        known.targets[endpoint.pk] = target_resolve(endpoint.url)
    except SecretUnreadable as exc:
        known.targets[endpoint.pk] = str(exc)
    except AddressRefused as exc:
        known.targets[endpoint.pk] = f"refused: {exc}"[:255]


def _attempt(delivery: Delivery, known: _Round) -> Response:
    event, endpoint = delivery.event, delivery.endpoint
    target = known.targets[endpoint.pk]
    if isinstance(target, str):
        return Response(None, target)
    secrets = known.secrets
    body = payload(event)
    headers = {
        SIGNATURE_HEADER: signature(
            secret=secrets[endpoint.pk], timestamp=int(time.time()), body=body
        ),
        EVENT_ID_HEADER: str(event.uid),
        EVENT_TYPE_HEADER: event.type,
        "Idempotency-Key": str(event.uid),
        "User-Agent": "appserver-webhooks/1",
    }
    return post(target=target, body=body, headers=headers)


def _record(delivery: Delivery, response: Response, now: datetime, result: RoundResult) -> bool:
    """Note the attempt's outcome on `delivery` (saved with the round's); True if delivered."""
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status = response.status
    delivery.last_error = response.error
    if not response.error:
        delivery.state = Delivery.State.DELIVERED
        delivery.delivered_at = now
        result.count("delivered")
        metrics.delivered()
    else:
        next_at = now + timedelta(seconds=retry_delay(delivery.attempts))
        give_up_at = delivery.event.occurred_at + timedelta(hours=settings.EVENTS_MAX_AGE_HOURS)
        if next_at > give_up_at:
            delivery.state = Delivery.State.FAILED
            result.count("parked")
            metrics.parked()
            logger.warning(
                "Webhook delivery parked after %s attempts: event %s to endpoint %s: %s",
                delivery.attempts,
                delivery.event.uid,
                delivery.endpoint_id,
                response.error,
            )
        else:
            delivery.next_attempt_at = next_at
            result.count("retrying")
            metrics.retrying()
    return not response.error


_OUTCOME_FIELDS = [
    "attempts",
    "last_attempt_at",
    "last_status",
    "last_error",
    "state",
    "delivered_at",
    "next_attempt_at",
]


def _claim(now: datetime, limit: int) -> list[Delivery]:
    """Lock up to `limit` due deliveries (SKIP LOCKED), then keep, per (endpoint, user) line,
    only a claim that starts at the line's first pending delivery: if an earlier one is pending
    (locked by another worker, or waiting for its retry), the line is not ours this round.
    Two queries per round, whatever the number of deliveries."""
    claimed = list(
        Delivery.objects.filter(state=Pending, next_attempt_at__lte=now, endpoint__active=True)
        .order_by("event_id")
        .select_related("event", "endpoint")
        .select_for_update(skip_locked=True, of=("self",))[:limit]
    )
    if not claimed:
        return []
    lines: dict[tuple[int, str], list[Delivery]] = {}
    for delivery in claimed:
        lines.setdefault((delivery.endpoint_id, delivery.user_public_id), []).append(delivery)
    # Every pending delivery of these lines up to the last one claimed, read after the locks
    # were taken (what another worker committed meanwhile is seen): a line is ours as far as
    # our claim equals its pending deliveries from the first on. An earlier one locked by
    # another worker, or waiting for its retry, makes the claim start late: not ours; one
    # skipped in the middle cuts our claim there.
    pending: dict[tuple[int, str], list[int]] = {}
    rows = Delivery.objects.filter(
        state=Pending,
        endpoint_id__in={endpoint for endpoint, _ in lines},
        user_public_id__in={user for _, user in lines},
        event_id__lte=max(d.event_id for d in claimed),
    ).values_list("endpoint_id", "user_public_id", "event_id")
    for endpoint_id, user, event_id in rows:
        if (endpoint_id, user) in lines:
            pending.setdefault((endpoint_id, user), []).append(event_id)
    ours = []
    for line, deliveries in lines.items():
        for delivery, event_id in zip(deliveries, sorted(pending.get(line, ())), strict=False):
            if delivery.event_id != event_id:
                break
            ours.append(delivery)
    return sorted(ours, key=lambda d: d.event_id)


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    """The worker's posting threads, kept between rounds (starting them every round cost more
    than the posts to a fast receiver)."""
    size = settings.EVENTS_DELIVERY_THREADS
    if size not in _pools:
        _pools[size] = ThreadPoolExecutor(size, thread_name_prefix="deliver")
    return _pools[size]


def deliveries_post(*, limit: int = 100) -> RoundResult:
    """One round: claim due deliveries, post each line's in order (a failure ends its line for
    this round), and commit every outcome together; a worker killed before the commit leaves
    them all pending (posted again: at least once)."""
    result = RoundResult()
    known = _Round(secrets={}, targets={})
    with transaction.atomic():
        claimed = _claim(timezone.now(), limit)
        result.claimed = len(claimed)
        lines: dict[tuple[int, str], list[Delivery]] = {}
        for delivery in claimed:
            lines.setdefault((delivery.endpoint_id, delivery.user_public_id), []).append(delivery)
            _prepare(delivery.endpoint, known)

        def post_line(deliveries: list[Delivery]) -> list[Delivery]:
            """A line's deliveries in order, until one fails (the rest wait behind it)."""
            attempted = []
            for delivery in deliveries:
                attempted.append(delivery)
                if not _record(delivery, _attempt(delivery, known), timezone.now(), result):
                    break
            return attempted

        # Lines in parallel (a slow receiver holds up only its own lines), each line in order.
        if len(lines) > 1 and settings.EVENTS_DELIVERY_THREADS > 1:
            done = list(_pool().map(post_line, lines.values()))
        else:
            done = [post_line(deliveries) for deliveries in lines.values()]
        _outcomes_save([delivery for attempted in done for delivery in attempted])
    return result


# One UPDATE for the round (Django's bulk_update writes a CASE per column and row, which
# PostgreSQL evaluates row by row: slower than one UPDATE per delivery).
_OUTCOMES_SQL = """
UPDATE events_delivery AS d
SET attempts = v.attempts, last_attempt_at = v.last_attempt_at, last_status = v.last_status,
    last_error = v.last_error, state = v.state, delivered_at = v.delivered_at,
    next_attempt_at = v.next_attempt_at
FROM (VALUES {rows}) AS v(
    id, attempts, last_attempt_at, last_status, last_error, state, delivered_at, next_attempt_at
)
WHERE d.id = v.id
"""
_OUTCOME_ROW = (
    "(%s::bigint, %s::integer, %s::timestamptz, %s::smallint, %s::varchar, %s::varchar,"
    " %s::timestamptz, %s::timestamptz)"
)


def _outcomes_save(deliveries: list[Delivery]) -> None:
    if not deliveries:
        return
    if connection.vendor != "postgresql":
        Delivery.objects.bulk_update(deliveries, _OUTCOME_FIELDS)
        return
    params: list = []
    for d in deliveries:
        params += [d.pk, *(getattr(d, field) for field in _OUTCOME_FIELDS)]
    sql = _OUTCOMES_SQL.format(rows=", ".join([_OUTCOME_ROW] * len(deliveries)))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def backlog() -> tuple[int, float | None]:
    """(pending deliveries, age in seconds of the oldest pending event), for /metrics."""
    pending = Delivery.objects.filter(state=Pending)
    count = pending.count()
    oldest = (
        pending.order_by("event__occurred_at").values_list("event__occurred_at", flat=True).first()
    )
    undispatched = Event.objects.filter(dispatched=False)
    count += undispatched.count()
    first_new = undispatched.order_by("id").values_list("occurred_at", flat=True).first()
    times = [t for t in (oldest, first_new) if t is not None]
    age = (timezone.now() - min(times)).total_seconds() if times else None
    return count, age
