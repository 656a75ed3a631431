"""The admin: endpoints with a write-only secret, read-only events and deliveries, replay of
selected events (a filtered time range with "select all") and of deliveries."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.urls import reverse

from events.delivery import events_fan_out
from events.models import Delivery, Event, EventType, WebhookEndpoint
from events.secrets import secret_open
from events.services import event_record

pytestmark = pytest.mark.django_db


def test_an_endpoint_is_added_with_a_secret_never_shown_again(admin_client, settings):
    settings.EVENTS_ALLOW_PRIVATE_ADDRESSES = True
    secret = "s3cret-of-the-thumbnailer-0123456789"
    response = admin_client.post(
        reverse("admin:events_webhookendpoint_add"),
        {
            "name": "thumbs",
            "url": "http://127.0.0.1:9/hooks",
            "event_types": ["upload.accepted", "upload.deleted"],
            "active": "on",
            "secret": secret,
        },
    )
    assert response.status_code == 302, response.content
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.event_types == ["upload.accepted", "upload.deleted"]
    assert secret_open(endpoint.secret_sealed) == secret
    page = admin_client.get(reverse("admin:events_webhookendpoint_change", args=[endpoint.pk]))
    assert page.status_code == 200
    assert secret.encode() not in page.content
    assert endpoint.secret_sealed.encode() not in page.content
    # Saved again without a secret: the old one stays.
    admin_client.post(
        reverse("admin:events_webhookendpoint_change", args=[endpoint.pk]),
        {"name": "thumbs", "url": "http://127.0.0.1:9/hooks", "active": "on", "secret": ""},
    )
    endpoint.refresh_from_db()
    assert secret_open(endpoint.secret_sealed) == secret
    assert endpoint.event_types == []  # none checked: all


@pytest.mark.parametrize(
    ("url", "secret", "error"),
    [
        ("http://169.254.169.254/", "x" * 30, b"metadata"),
        ("http://127.0.0.1:9/", "", b"needs a secret"),
        ("http://127.0.0.1:9/", "short", b"At least 24"),
    ],
)
def test_refused_endpoints(admin_client, settings, url, secret, error):
    settings.EVENTS_ALLOW_PRIVATE_ADDRESSES = True
    response = admin_client.post(
        reverse("admin:events_webhookendpoint_add"),
        {"url": url, "active": "on", "secret": secret},
    )
    assert response.status_code == 200
    assert error in response.content
    assert not WebhookEndpoint.objects.exists()


def test_replay_of_a_filtered_time_range(admin_client, settings):
    settings.EVENTS_ALLOW_PRIVATE_ADDRESSES = True
    WebhookEndpoint.objects.create(url="http://127.0.0.1:9/", secret_sealed="x")
    with transaction.atomic():
        events = [
            event_record(type=EventType.USER_SUSPENDED, user_public_id=f"u{i}", data={})
            for i in range(3)
        ]
    events_fan_out()
    Delivery.objects.update(state=Delivery.State.DELIVERED)
    first = events[0].occurred_at
    changelist = reverse("admin:events_event_changelist")
    query = f"?occurred_at__gte={first.isoformat()}&user_public_id__in=u0,u1"
    page = admin_client.get(changelist + query.replace("+", "%2B"))
    assert page.status_code == 200
    response = admin_client.post(
        changelist + query.replace("+", "%2B"),
        {
            "action": "replay_events",
            "select_across": "1",
            "index": "0",
            "_selected_action": [str(events[0].pk)],
        },
    )
    assert response.status_code == 302
    pending = set(
        Delivery.objects.filter(state=Delivery.State.PENDING).values_list("event_id", flat=True)
    )
    assert pending == {events[0].pk, events[1].pk}


def test_events_and_deliveries_are_read_only_and_replayable(admin_client, settings):
    WebhookEndpoint.objects.create(url="http://127.0.0.1:9/", secret_sealed="x")
    with transaction.atomic():
        event_record(type=EventType.USER_SUSPENDED, user_public_id="u", data={"reason": "r"})
    events_fan_out()
    delivery = Delivery.objects.get()
    Delivery.objects.update(state=Delivery.State.FAILED, attempts=7)
    assert admin_client.get(reverse("admin:events_event_add")).status_code == 403
    assert admin_client.get(reverse("admin:events_delivery_changelist")).status_code == 200
    admin_client.post(
        reverse("admin:events_delivery_changelist"),
        {"action": "replay", "_selected_action": [str(delivery.pk)]},
    )
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (Delivery.State.PENDING, 0)
    assert Event.objects.count() == 1
