"""The worker's steps: fan new events out into deliveries, then post the due ones.

Order: a delivery is due only when no earlier event of the same user is still pending for the
same endpoint (a failing event holds back that user's later events for that endpoint, and
nobody else's). Several workers: each claims due deliveries with FOR UPDATE SKIP LOCKED and
holds the row locks until it has posted and recorded them; a pending, locked head keeps the
user's later deliveries out of every other worker's claim, so one (endpoint, user) line is
never posted by two workers at once. A worker killed mid-delivery rolls back: the rows become
claimable again and are posted again (at least once; receivers de-duplicate on the event id).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from events import metrics
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

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.parked


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


def _attempt(delivery: Delivery, secrets: dict[int, str]) -> Response:
    event, endpoint = delivery.event, delivery.endpoint
    if endpoint.pk not in secrets:
        try:
            secrets[endpoint.pk] = secret_open(endpoint.secret_sealed)
        except SecretUnreadable as exc:
            return Response(None, str(exc))
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
    return post(url=endpoint.url, body=body, headers=headers)


def _record(delivery: Delivery, response: Response, now: datetime, result: RoundResult) -> bool:
    """Save the attempt's outcome; True if delivered."""
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status = response.status
    delivery.last_error = response.error
    if not response.error:
        delivery.state = Delivery.State.DELIVERED
        delivery.delivered_at = now
        result.delivered += 1
        metrics.delivered()
    else:
        next_at = now + timedelta(seconds=retry_delay(delivery.attempts))
        give_up_at = delivery.event.occurred_at + timedelta(hours=settings.EVENTS_MAX_AGE_HOURS)
        if next_at > give_up_at:
            delivery.state = Delivery.State.FAILED
            result.parked += 1
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
            result.retrying += 1
            metrics.retrying()
    delivery.save(
        update_fields=[
            "attempts",
            "last_attempt_at",
            "last_status",
            "last_error",
            "state",
            "delivered_at",
            "next_attempt_at",
        ]
    )
    return not response.error


def _due(now: datetime):
    earlier = Delivery.objects.filter(
        endpoint_id=OuterRef("endpoint_id"),
        user_public_id=OuterRef("user_public_id"),
        state=Pending,
        event_id__lt=OuterRef("event_id"),
    )
    return (
        Delivery.objects.filter(state=Pending, next_attempt_at__lte=now, endpoint__active=True)
        .exclude(Exists(earlier))
        .select_related("event", "endpoint")
    )


def deliveries_post(*, limit: int = 50, per_line: int = 20) -> RoundResult:
    """One round: claim up to `limit` due heads of (endpoint, user) lines, post each and, while
    they succeed, up to `per_line` more of the same line; commit the outcomes together."""
    result = RoundResult()
    secrets: dict[int, str] = {}
    with transaction.atomic():
        now = timezone.now()
        heads = list(
            _due(now).order_by("event_id").select_for_update(skip_locked=True, of=("self",))[:limit]
        )
        for head in heads:
            delivery, posted = head, 0
            while delivery is not None and posted < per_line:
                ok = _record(delivery, _attempt(delivery, secrets), timezone.now(), result)
                posted += 1
                if not ok:
                    break
                # The next of this line: nobody else can hold it while its predecessor (ours,
                # locked, still pending to everyone else) is uncommitted.
                delivery = (
                    Delivery.objects.filter(
                        endpoint_id=head.endpoint_id,
                        user_public_id=head.user_public_id,
                        state=Pending,
                        event_id__gt=delivery.event_id,
                        next_attempt_at__lte=timezone.now(),
                    )
                    .order_by("event_id")
                    .select_related("event", "endpoint")
                    .select_for_update(skip_locked=True, of=("self",))
                    .first()
                )
    return result


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
