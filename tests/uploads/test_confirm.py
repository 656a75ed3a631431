"""Confirm instead of re-upload: POST /api/uploads/tickets/{id}/confirm/ after 203 or a lost
answer. The server checks the stored object and applies the callback's own rules."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import oss2
import pytest
import requests

from tests.uploads.conftest import callback_body
from uploads.models import CallbackRefusal, StorageUsage, Upload, UploadTicket

pytestmark = pytest.mark.django_db(transaction=True)


def _confirm(live, user, ticket_id: str) -> requests.Response:
    return live.api("POST", f"/api/uploads/tickets/{ticket_id}/confirm/", user)


def _usage(user) -> tuple[int, int, int, int]:
    usage = StorageUsage.objects.get(user=user)
    return usage.bytes_used, usage.objects_used, usage.bytes_reserved, usage.objects_reserved


def test_confirm_records_an_upload_whose_callback_failed(live, user):
    data = b"stored but unheard"
    ticket = live.upload_unheard(user, data)
    assert Upload.objects.count() == 0
    assert _usage(user) == (0, 0, len(data), 1)

    response = _confirm(live, user, ticket["id"])
    assert response.status_code == 200, response.text
    upload = Upload.objects.get()
    etag = live.root_bucket().head_object(ticket["key"]).etag.upper()
    assert response.json() == {
        "ok": True,
        "upload": {
            "id": upload.pk,
            "key": ticket["key"],
            "bucket": live.settings.OSS_BUCKET,
            "filename": "n.txt",
            "size": len(data),
            "content_type": "text/plain",
            "etag": etag,
            "image_width": None,
            "image_height": None,
            "image_format": "",
            "metadata": {},
            "created_at": upload.created_at.isoformat().replace("+00:00", "Z"),
        },
    }
    assert upload.verified_at is not None  # size, ETag and type are OSS's own
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.USED
    assert _usage(user) == (len(data), 1, 0, 0)

    # Idempotent: confirming again, and the real callback arriving late, give the same answer.
    again = _confirm(live, user, ticket["id"])
    late = live.post_callback(callback_body(ticket, etag=etag, size=len(data), mime="text/plain"))
    assert again.json() == late.json() == response.json()
    assert Upload.objects.count() == 1
    assert CallbackRefusal.objects.count() == 0
    assert _usage(user) == (len(data), 1, 0, 0)


def test_nothing_uploaded_yet_is_a_409_and_changes_nothing(live, user):
    ticket = live.ticket(user, filename="n.txt", size=5, content_type="text/plain")
    response = _confirm(live, user, ticket["id"])
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "object_missing"
    assert set(response.json()["error"]) == {"code", "message"}
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.ISSUED
    assert (Upload.objects.count(), CallbackRefusal.objects.count()) == (0, 0)
    assert _usage(user) == (0, 0, 5, 1)


def test_only_the_owner_can_confirm(live, user, other_user):
    ticket = live.upload_unheard(user, b"mine")
    for who, ticket_id in ((other_user, ticket["id"]), (user, "0" * 32)):
        response = _confirm(live, who, ticket_id)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    anonymous = requests.post(
        live.url + f"/api/uploads/tickets/{ticket['id']}/confirm/", timeout=10
    )
    assert anonymous.status_code == 401
    assert Upload.objects.count() == 0
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.ISSUED


def test_an_object_that_breaks_the_ticket_is_refused_and_removed(live, user):
    ticket = live.upload_unheard(user, b"ten bytes!", declared=4)
    response = _confirm(live, user, ticket["id"])
    assert response.status_code == 200
    assert response.json() == {
        "ok": False,
        "error": {
            "code": "size_mismatch",
            "message": "The object has 10 bytes; the ticket allowed 4.",
        },
        "key": ticket["key"],
        "object_removed": True,
    }
    with pytest.raises(oss2.exceptions.NotFound):
        live.root_bucket().head_object(ticket["key"])
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.REFUSED
    assert _usage(user) == (0, 0, 0, 0)
    assert _confirm(live, user, ticket["id"]).json() == response.json()  # a replay


def test_the_deadline_is_judged_when_oss_stored_the_object(live, user):
    in_time = live.upload_unheard(user, b"early")
    late = live.upload_unheard(user, b"late!")
    for ticket, seconds in ((in_time, 5), (late, -5)):
        stored = live.root_bucket().head_object(ticket["key"]).last_modified
        UploadTicket.objects.filter(pk=ticket["id"]).update(
            expires_at=datetime.fromtimestamp(stored, UTC) + timedelta(seconds=seconds)
        )
    assert _confirm(live, user, in_time["id"]).json()["ok"] is True
    refused = _confirm(live, user, late["id"]).json()
    assert (refused["ok"], refused["error"]["code"], refused["object_removed"]) == (
        False,
        "ticket_expired",
        True,
    )


def test_storage_down_is_a_503_and_changes_nothing(live, user):
    ticket = live.upload_unheard(user, b"abc")
    live.settings.OSS_ENDPOINT = "http://127.0.0.1:9"
    try:
        response = _confirm(live, user, ticket["id"])
    finally:
        live.settings.OSS_ENDPOINT = live.emulator.endpoint
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.ISSUED
    assert Upload.objects.count() == 0


def test_confirmations_racing_the_real_callback_record_one_upload(live, user):
    """Real threads against PostgreSQL: four confirmations and four deliveries of the real
    callback, released at once; one row, one answer."""
    data = b"raced"
    ticket = live.upload_unheard(user, data)
    etag = live.root_bucket().head_object(ticket["key"]).etag.upper()
    body = callback_body(ticket, etag=etag, size=len(data), mime="text/plain")
    start = threading.Barrier(8)
    answers: list[dict] = []

    def confirm():
        start.wait()
        answers.append(_confirm(live, user, ticket["id"]).json())

    def callback():
        start.wait()
        answers.append(live.post_callback(body).json())

    threads = [threading.Thread(target=f) for f in [confirm, callback] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 8
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0]["ok"] is True
    assert Upload.objects.count() == 1
    assert CallbackRefusal.objects.count() == 0
    assert _usage(user) == (len(data), 1, 0, 0)
