"""Writing events (inside the caller's transaction), managing endpoints, replaying."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from events.addresses import AddressRefused, target_resolve, url_refusal
from events.models import Delivery, Event, EventType, WebhookEndpoint
from events.secrets import secret_generate, secret_seal

# Never part of an event, whatever a caller passes in `data`.
_FORBIDDEN_KEYS = frozenset(
    {"password", "secret", "token", "access_key_secret", "security_token", "credentials"}
)


def event_record(
    *,
    type: str,
    user_public_id: str,
    data: dict[str, Any],
    at: datetime | None = None,
    alone: bool = False,
) -> Event:
    """Write an event in the caller's transaction: it commits, or rolls back, with the change
    it reports. `alone=True` says the event is the whole change (a refusal that wrote nothing
    else), so autocommit is right."""
    if not alone and not connection.in_atomic_block:
        raise RuntimeError("event_record must run inside the transaction of the change it reports")
    EventType(type)  # a typo is a bug, not a new type
    if _FORBIDDEN_KEYS & set(data):
        raise ValueError(f"Events never carry credentials: {sorted(_FORBIDDEN_KEYS & set(data))}")
    return Event.objects.create(
        type=type, user_public_id=user_public_id, data=data, occurred_at=at or timezone.now()
    )


def _event_types_clean(event_types: Iterable[str]) -> list[str]:
    types = sorted({t.strip() for t in event_types if t.strip()})
    unknown = [t for t in types if t not in EventType.values]
    if unknown:
        raise ValidationError(
            f"Unknown event types: {', '.join(unknown)} (known: {', '.join(EventType.values)})."
        )
    return types


def endpoint_url_check(url: str) -> None:
    """ValidationError unless `url` may be an endpoint: scheme, host allow-list, and what it
    resolves to now (the worker checks again at every connection)."""
    refusal = url_refusal(url)
    if refusal:
        raise ValidationError(refusal)
    try:
        target_resolve(url)
    except AddressRefused as exc:
        raise ValidationError(str(exc)) from exc


def endpoint_create(
    *, url: str, event_types: Iterable[str] = (), name: str = "", secret: str = ""
) -> tuple[WebhookEndpoint, str]:
    """A new active endpoint and its secret (generated unless given): the only time the secret
    is returned."""
    endpoint_url_check(url)
    secret = secret or secret_generate()
    endpoint = WebhookEndpoint.objects.create(
        url=url,
        name=name,
        event_types=_event_types_clean(event_types),
        secret_sealed=secret_seal(secret),
    )
    return endpoint, secret


def endpoint_update(
    endpoint: WebhookEndpoint,
    *,
    url: str | None = None,
    event_types: Iterable[str] | None = None,
    active: bool | None = None,
    name: str | None = None,
    secret: str | None = None,
) -> WebhookEndpoint:
    if url is not None:
        endpoint_url_check(url)
        endpoint.url = url
    if event_types is not None:
        endpoint.event_types = _event_types_clean(event_types)
    if active is not None:
        endpoint.active = active
    if name is not None:
        endpoint.name = name
    if secret:
        endpoint.secret_sealed = secret_seal(secret)
    endpoint.save()
    return endpoint


def events_replay(
    *,
    event_ids: Iterable[int] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    endpoint_ids: Iterable[int] | None = None,
) -> int:
    """Deliver events again (staff): the chosen events, or those in [since, until), to every
    active endpoint that wants them (or only `endpoint_ids`). A delivered or parked delivery
    becomes pending with fresh attempts; a missing one is created. Returns the deliveries
    queued. Receivers see the same event id again: they de-duplicate on it."""
    events = Event.objects.all()
    if event_ids is not None:
        events = events.filter(pk__in=list(event_ids))
    if since is not None:
        events = events.filter(occurred_at__gte=since)
    if until is not None:
        events = events.filter(occurred_at__lt=until)
    endpoints = WebhookEndpoint.objects.filter(active=True)
    if endpoint_ids is not None:
        endpoints = endpoints.filter(pk__in=list(endpoint_ids))
    endpoints = list(endpoints)
    now = timezone.now()
    queued = 0
    for event in events.order_by("id").iterator(chunk_size=500):
        with transaction.atomic():
            for endpoint in endpoints:
                if not endpoint.wants(event.type):
                    continue
                updated = Delivery.objects.filter(event=event, endpoint=endpoint).update(
                    state=Delivery.State.PENDING, attempts=0, next_attempt_at=now, last_error=""
                )
                if not updated:
                    Delivery.objects.get_or_create(
                        event=event,
                        endpoint=endpoint,
                        defaults={"user_public_id": event.user_public_id, "next_attempt_at": now},
                    )
                queued += 1
            Event.objects.filter(pk=event.pk, dispatched=False).update(dispatched=True)
    return queued


def events_prune(*, before: datetime) -> int:
    """Delete events older than `before` with nothing left to deliver (retention)."""
    pending = Delivery.objects.filter(state=Delivery.State.PENDING).values("event_id")
    old = Event.objects.filter(Q(occurred_at__lt=before), dispatched=True).exclude(pk__in=pending)
    _, by_model = old.delete()
    return by_model.get("events.Event", 0)
