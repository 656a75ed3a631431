"""Ticket requests: limits, validation, reservations, expiry (API client; no OSS needed)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.services import user_suspend
from uploads.models import StorageUsage, UploadTicket
from uploads.services import tickets_expire

URL = "/api/uploads/tickets/"


def _post(client, **body):
    payload = {"filename": "a.png", "size": 10, "content_type": "image/png", **body}
    return client.post(URL, payload, format="json")


@pytest.mark.django_db
def test_ticket_shape_and_key(auth_client, user, settings):
    response = _post(auth_client, filename="C:\\photos\\Holiday Pic.JPG", size=123)
    assert response.status_code == 201
    body = response.json()
    ticket = UploadTicket.objects.get()
    assert body["id"] == str(ticket.id)
    assert body["key"] == ticket.key
    assert body["key"].startswith(f"users/{user.public_id}/")
    assert body["key"].endswith(f"/{ticket.id.hex}.png")  # the type's, not the name's
    assert ticket.filename == "Holiday Pic.JPG"
    assert body["max_size"] == 123
    callback = json.loads(base64.b64decode(body["headers"]["x-oss-callback"]))
    variables = json.loads(base64.b64decode(body["headers"]["x-oss-callback-var"]))
    assert callback == {
        "callbackUrl": settings.OSS_CALLBACK_URL,
        "callbackBody": body["callback"]["callbackBody"],
        "callbackBodyType": "application/x-www-form-urlencoded",
    }
    assert "ticket=${x:ticket}" in callback["callbackBody"]
    assert variables == body["callback"]["callbackVar"]
    assert variables["x:ticket"].startswith(ticket.id.hex + ".")
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_reserved, usage.objects_reserved) == (123, 1)


@pytest.mark.django_db
def test_keys_are_unique_and_extension_falls_back_to_the_type(auth_client):
    keys = {_post(auth_client, filename="noext").json()["key"] for _ in range(3)}
    assert len(keys) == 3
    assert all(key.endswith(".png") for key in keys)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"size": 2 * 1024**3}, "file_too_large", "size"),
        ({"content_type": "application/x-msdownload"}, "content_type_not_allowed", "content_type"),
        ({"content_type": "not a type"}, "invalid_input", "content_type"),
        ({"size": -1}, "invalid_input", "size"),
        ({"filename": ""}, "invalid_input", "filename"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "invalid_input", "metadata"),
        ({"metadata": {"bad key": "v"}}, "invalid_input", "metadata"),
        ({"metadata": {"k": "v" * 257}}, "invalid_input", "metadata"),
    ],
)
def test_bad_requests(auth_client, body, code, field):
    response = _post(auth_client, **body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert field in response.json()["error"]["fields"]
    assert UploadTicket.objects.count() == 0


@pytest.mark.django_db
def test_quota_by_bytes_and_objects(auth_client, user, settings):
    settings.UPLOAD_QUOTA_BYTES = 25
    assert _post(auth_client, size=10).status_code == 201
    assert _post(auth_client, size=10).status_code == 201
    refused = _post(auth_client, size=10)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "quota_exceeded"
    StorageUsage.objects.filter(user=user).update(max_bytes=None, max_objects=2)
    settings.UPLOAD_QUOTA_BYTES = 1000
    assert _post(auth_client, size=1).json()["error"]["code"] == "quota_exceeded"
    StorageUsage.objects.filter(user=user).update(max_objects=3)
    assert _post(auth_client, size=1).status_code == 201


@pytest.mark.django_db
def test_suspended_user_gets_no_ticket(auth_client, user):
    user_suspend(user=user)
    response = _post(auth_client)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "account_suspended"


@pytest.mark.django_db
def test_unauthenticated_gets_401(api_client):
    response = _post(api_client)
    assert response.status_code == 401


@pytest.mark.django_db
def test_expired_tickets_release_their_reservation_lazily(auth_client, user, settings):
    settings.UPLOAD_QUOTA_OBJECTS = 1
    assert _post(auth_client, size=10).status_code == 201
    assert _post(auth_client, size=10).status_code == 403
    UploadTicket.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _post(auth_client, size=7).status_code == 201  # no cron ran
    assert UploadTicket.objects.filter(status="expired").count() == 1
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_reserved, usage.objects_reserved) == (7, 1)


@pytest.mark.django_db
def test_expire_command_and_service(auth_client, user, other_user):
    for _ in range(2):
        assert _post(auth_client, size=5).status_code == 201
    UploadTicket.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _post(auth_client, size=5).status_code == 201  # expires the first two lazily
    UploadTicket.objects.filter(status="issued").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    call_command("expire_tickets")
    assert UploadTicket.objects.filter(status="expired").count() == 3
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_reserved, usage.objects_reserved) == (0, 0)
    assert tickets_expire(now=timezone.now()) == 0


@pytest.mark.django_db
def test_tickets_are_throttled_per_user(auth_client, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "tickets": "2/min",
        },
    }
    assert [_post(auth_client, size=1).status_code for _ in range(3)] == [201, 201, 429]
