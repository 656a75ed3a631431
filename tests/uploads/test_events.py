"""Every state change writes its event in its own transaction (events/, the outbox): accepted
(fast and locked paths), refused, deleted, adopted, quota exceeded, suspended, erased; and no
event for a transaction that rolled back."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from accounts.services import user_suspend
from events.models import Event, EventType
from tests.uploads.conftest import callback_body
from uploads.erasure import account_erase
from uploads.models import CallbackRefusal, StorageUsage, Upload
from uploads.services import QuotaExceeded, ticket_issue, upload_delete
from uploads.sweep import uploads_sweep

pytestmark = pytest.mark.django_db(transaction=True)
NO_OVERWRITE = {"x-oss-forbid-overwrite": "true"}


def _put(live, user, ticket, data: bytes, content_type="text/plain"):
    return live.bucket(user).put_object(
        ticket["key"], data, headers={**ticket["headers"], "Content-Type": content_type}
    )


def _events(type_: str) -> list[Event]:
    return list(Event.objects.filter(type=type_).order_by("id"))


def test_an_accepted_upload_writes_upload_accepted_with_its_facts(live, user):
    data = b"hello events"
    ticket = live.ticket(
        user, filename="a.txt", size=len(data), content_type="text/plain", metadata={"k": "v"}
    )
    result = _put(live, user, ticket, data)
    assert json.loads(result.resp.read())["ok"] is True
    upload = Upload.objects.get()
    (event,) = _events(EventType.UPLOAD_ACCEPTED)
    assert event.user_public_id == user.public_id
    assert event.data == {
        "upload_id": upload.pk,
        "key": ticket["key"],
        "bucket": upload.bucket,
        "filename": "a.txt",
        "size": len(data),
        "content_type": "text/plain",
        "etag": upload.etag,
        "metadata": {"k": "v"},
        "image_width": None,
        "image_height": None,
    }
    assert event.occurred_at == upload.created_at


def test_the_locked_path_writes_the_same_event(live, user):
    data = b"first upload, no usage row yet"
    ticket = live.ticket(user, filename="b.txt", size=len(data), content_type="text/plain")
    StorageUsage.objects.filter(user=user).delete()  # the fast path needs the row: locked path
    _put(live, user, ticket, data)
    (event,) = _events(EventType.UPLOAD_ACCEPTED)
    assert event.data["key"] == ticket["key"]
    assert event.data["upload_id"] == Upload.objects.get().pk
    assert set(event.data) == {
        "upload_id", "key", "bucket", "filename", "size", "content_type", "etag", "metadata",
        "image_width", "image_height",
    }  # fmt: skip


def test_a_refused_upload_writes_upload_refused_with_the_reason(live, user):
    ticket = live.ticket(user, filename="c.txt", size=4, content_type="text/plain")
    body = callback_body(ticket, etag="E" * 32, size=10, mime="text/plain")
    live.root_bucket().put_object(ticket["key"], b"0123456789", headers=NO_OVERWRITE)
    assert live.post_callback(body).json()["ok"] is False
    (event,) = _events(EventType.UPLOAD_REFUSED)
    assert event.user_public_id == user.public_id
    assert event.data["key"] == ticket["key"]
    refusal = CallbackRefusal.objects.get()
    assert (event.data["reason"], event.data["message"]) == (refusal.reason, refusal.message)
    assert refusal.reason == CallbackRefusal.Reason.SIZE_MISMATCH
    assert Event.objects.filter(type=EventType.UPLOAD_ACCEPTED).count() == 0


def test_over_quota_at_ticket_time_writes_quota_exceeded_and_nothing_else(user, settings):
    settings.UPLOAD_QUOTA_BYTES = 10
    with pytest.raises(QuotaExceeded):
        ticket_issue(user=user, filename="big.txt", size=11, content_type="text/plain")
    (event,) = Event.objects.all()
    assert (event.type, event.user_public_id) == (EventType.QUOTA_EXCEEDED, user.public_id)
    assert event.data["at"] == "ticket" and event.data["size"] == 11


def test_a_deletion_writes_upload_deleted(live, user):
    ticket = live.ticket(user, filename="d.txt", size=3, content_type="text/plain")
    _put(live, user, ticket, b"abc")
    upload = Upload.objects.get()
    upload_delete(user=user, upload_id=upload.pk)
    upload_delete(user=user, upload_id=upload.pk)  # idempotent: no second event
    (event,) = _events(EventType.UPLOAD_DELETED)
    assert (event.data["upload_id"], event.data["key"]) == (upload.pk, ticket["key"])


def test_the_sweep_adopting_an_object_writes_upload_adopted(live, user, settings):
    settings.SWEEP_GRACE_SECONDS = 0
    live.ticket(user, filename="t.txt", size=1, content_type="text/plain")  # usage row
    key = f"users/{user.public_id}/stray.txt"
    live.bucket(user).put_object(
        key, b"no callback", headers={"Content-Type": "text/plain", **NO_OVERWRITE}
    )
    assert uploads_sweep().adopted == 1
    (event,) = _events(EventType.UPLOAD_ADOPTED)
    assert (event.data["key"], event.data["by"], event.user_public_id) == (
        key,
        "sweep",
        user.public_id,
    )


def test_suspension_writes_user_suspended_once(user):
    user_suspend(user=user, reason="abuse")
    user_suspend(user=user, reason="abuse again")
    (event,) = Event.objects.all()
    assert (event.type, event.user_public_id, event.data) == (
        EventType.USER_SUSPENDED,
        user.public_id,
        {"reason": "abuse"},
    )


def test_erasure_writes_user_erased_without_the_users_data(live, user):
    ticket = live.ticket(user, filename="e.txt", size=3, content_type="text/plain")
    _put(live, user, ticket, b"abc")
    public_id = user.public_id
    account_erase(user=user, reason="user_request")
    (event,) = _events(EventType.USER_ERASED)
    assert event.user_public_id == public_id
    assert event.data["uploads_deleted"] == 1 and event.data["objects_deleted"] == 1
    assert "key" not in event.data and "metadata" not in event.data


def test_no_event_for_a_transaction_that_rolled_back(live, user):
    ticket = live.ticket(user, filename="f.txt", size=3, content_type="text/plain")
    _put(live, user, ticket, b"abc")
    upload = Upload.objects.get()
    before = Event.objects.count()

    class Abort(Exception):
        pass

    # The deletion's own transaction joins this one, which then rolls back: neither the row's
    # change nor its event remain.
    with pytest.raises(Abort), transaction.atomic():
        user_suspend(user=user, reason="rolled back")
        upload_delete(user=user, upload_id=upload.pk)
        raise Abort
    assert Event.objects.count() == before
    upload.refresh_from_db()
    user.refresh_from_db()
    assert upload.status == Upload.Status.ACTIVE and not user.is_suspended
