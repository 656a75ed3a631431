"""Delivery to a real HTTP receiver: signatures, retries, ordering per user, parking, replay,
and where requests may go."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from events.delivery import deliveries_post, events_fan_out
from events.models import Delivery, Event, EventType
from events.services import endpoint_create, event_record, events_replay

pytestmark = pytest.mark.django_db(transaction=True)


def record(user: str = "u1", n: int = 1, type: str = EventType.UPLOAD_ACCEPTED) -> list[Event]:
    with transaction.atomic():
        return [
            event_record(type=type, user_public_id=user, data={"key": f"users/{user}/{i}"})
            for i in range(n)
        ]


def run_until_settled(*, deadline: float = 20) -> None:
    """Fan out and post until nothing is pending (retries included)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        events_fan_out()
        deliveries_post()
        if not Delivery.objects.filter(state=Delivery.State.PENDING).exists() and not (
            Event.objects.filter(dispatched=False).exists()
        ):
            return
        time.sleep(0.01)
    raise AssertionError("deliveries still pending")


def test_an_event_is_posted_signed_with_its_id(endpoint, receiver):
    (event,) = record()
    run_until_settled()
    (got,) = receiver.received
    assert got.signed
    assert got.event_id == str(event.uid) == got.headers["Idempotency-Key"]
    assert got.body == {
        "id": str(event.uid),
        "type": "upload.accepted",
        "created_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "user": "u1",
        "data": {"key": "users/u1/0"},
    }
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)


def test_a_wrong_secret_does_not_verify(endpoint, receiver):
    receiver.secret = "not-the-endpoint-secret"
    record()
    run_until_settled()
    assert [r.signed for r in receiver.received] == [False]


def test_500s_and_timeouts_are_retried_until_a_2xx(endpoint, receiver):
    receiver.script = [500, ("sleep", 1.5), 503]  # the read timeout is 0.5 s
    (event,) = record()
    run_until_settled()
    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.DELIVERED
    assert delivery.attempts == 4
    # The timed-out request reached the receiver too: at least once, the same id every time.
    assert receiver.ids() == [str(event.uid)] * 4


def test_a_redirect_is_a_failure_and_is_not_followed(endpoint, receiver, settings):
    settings.EVENTS_MAX_AGE_HOURS = 0  # the first failure is the last try
    receiver.script = [302]
    record()
    run_until_settled()
    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.FAILED
    assert delivery.last_status == 302
    assert "not followed" in delivery.last_error
    assert len(receiver.received) == 1


def test_a_failing_event_holds_back_its_users_later_events_only(endpoint, receiver, settings):
    settings.EVENTS_RETRY_BASE_SECONDS = 0.3
    settings.EVENTS_RETRY_MAX_SECONDS = 0.3
    first, second, third = record("alice", 3)
    receiver.failures[str(first.uid)] = 2
    (bob,) = record("bob")
    run_until_settled()
    order = receiver.ids()
    alice = [i for i in order if i != str(bob.uid)]
    # Alice's events arrive in order, each after the previous one succeeded; Bob's was not
    # held back by Alice's failures.
    assert alice == [str(first.uid)] * 3 + [str(second.uid), str(third.uid)]
    assert order.index(str(bob.uid)) < order.index(str(second.uid))


def test_many_users_in_order_per_user(endpoint, receiver):
    events = []
    for _ in range(5):
        for user in ("a", "b", "c"):
            events += record(user, 2)
    run_until_settled()
    by_id = {str(e.uid): e for e in events}
    for user in ("a", "b", "c"):
        got = [by_id[i].pk for i in receiver.ids() if by_id[i].user_public_id == user]
        assert got == sorted(got) and len(got) == 10


def test_parked_after_the_last_try_then_replayed(endpoint, receiver, settings):
    settings.EVENTS_MAX_AGE_HOURS = 0
    receiver.script = [500]
    (event,) = record()
    run_until_settled()
    assert Delivery.objects.get().state == Delivery.State.FAILED
    settings.EVENTS_MAX_AGE_HOURS = 72
    assert events_replay(event_ids=[event.pk]) == 1
    run_until_settled()
    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.DELIVERED
    assert receiver.ids() == [str(event.uid)] * 2


def test_replay_of_a_time_range_reaches_a_new_endpoint(endpoint, receiver):
    old = record("u1", 2)
    run_until_settled()
    later = record("u2")
    run_until_settled()
    since = old[0].occurred_at
    until = old[-1].occurred_at + timedelta(microseconds=1)
    call_command("webhooks", "replay", "--since", since.isoformat(), "--until", until.isoformat())
    run_until_settled()
    ids = receiver.ids()
    assert ids.count(str(old[0].uid)) == ids.count(str(old[1].uid)) == 2
    assert ids.count(str(later[0].uid)) == 1


def test_only_the_types_an_endpoint_wants(endpoint, receiver):
    endpoint.event_types = ["user.suspended"]
    endpoint.save()
    record(type=EventType.UPLOAD_ACCEPTED)
    (wanted,) = record(type=EventType.USER_SUSPENDED)
    run_until_settled()
    assert receiver.ids() == [str(wanted.uid)]


def test_an_inactive_endpoint_gets_nothing_until_reactivated(endpoint, receiver):
    endpoint.active = False
    endpoint.save()
    record()
    events_fan_out()
    deliveries_post()
    assert receiver.received == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[fe80::1]/",
        "ftp://example.com/",
        "http://user:pw@example.com/",
    ],
)
def test_metadata_link_local_and_odd_urls_are_refused(db, url, settings):
    settings.EVENTS_ALLOW_PRIVATE_ADDRESSES = True  # even then
    with pytest.raises(ValidationError):
        endpoint_create(url=url)


def test_private_addresses_only_when_allowed(db, settings, receiver):
    settings.EVENTS_ALLOW_PRIVATE_ADDRESSES = False
    with pytest.raises(ValidationError, match="private"):
        endpoint_create(url=receiver.url)
    settings.EVENTS_ALLOWED_HOSTS = ["hooks.example.com"]
    settings.EVENTS_ALLOW_PRIVATE_ADDRESSES = True
    with pytest.raises(ValidationError, match="EVENTS_ALLOWED_HOSTS"):
        endpoint_create(url=receiver.url)


def test_the_address_is_checked_again_at_connection(endpoint, receiver, settings):
    # Allowed when saved; no longer allowed when the worker connects: nothing is sent.
    settings.EVENTS_ALLOW_PRIVATE_ADDRESSES = False
    record()
    events_fan_out()
    deliveries_post()
    assert receiver.received == []
    delivery = Delivery.objects.get()
    assert delivery.last_error.startswith("refused:")
    assert delivery.state == Delivery.State.PENDING


def test_the_secret_is_stored_encrypted(endpoint, receiver):
    assert receiver.secret not in endpoint.secret_sealed
    assert len(receiver.secret) >= 32


def test_events_written_now_are_due_now(endpoint, receiver):
    # fan-out creates deliveries due at once; next_attempt_at never in the future for new ones
    record()
    events_fan_out()
    assert Delivery.objects.get().next_attempt_at <= timezone.now()
