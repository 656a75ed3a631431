"""URL tickets: a presigned PUT whose signature covers the key, the type, the callback headers
and x-oss-forbid-overwrite. A plain HTTP PUT with the ticket's headers uploads; any edit is
refused by OSS itself (the emulator, as OSS documents it) before a byte is stored, and the
callback is trusted without a HeadObject."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import oss2
import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.uploads.conftest import callback_body
from uploads.models import CallbackRefusal, StorageUsage, Upload, UploadTicket
from uploads.services import callback_handle

pytestmark = pytest.mark.django_db(transaction=True)

DATA = b"a tiny text file"
UNREACHABLE = "http://127.0.0.1:9"  # nothing listens on the discard port


def url_ticket(live, user, *, data=DATA, content_type="text/plain", filename="a.txt"):
    ticket = live.ticket(
        user, filename=filename, size=len(data), content_type=content_type, mode="url"
    )
    assert ticket["mode"] == "url"
    return ticket


def put(upload: dict, data: bytes, *, url: str | None = None, **header_changes):
    headers = {**upload["headers"]}
    for name, value in header_changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return requests.put(url or upload["url"], data=data, headers=headers, timeout=10)


def nothing_happened(live, user, ticket, *keys):
    root = live.root_bucket()
    for key in (ticket["key"], *keys):
        assert root.object_exists(key) is False, key
    assert Upload.objects.count() == 0
    assert CallbackRefusal.objects.count() == 0
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.ISSUED
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_used, usage.bytes_reserved, usage.objects_reserved) == (
        0,
        ticket["max_size"],
        1,
    )


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_plain_put_uploads_and_the_callback_needs_no_head_object(live, user, settings, version):
    settings.OSS_SIGNATURE_VERSION = version
    ticket = url_ticket(live, user)
    upload = ticket["upload"]
    assert upload["method"] == "PUT"
    assert upload["headers"] == {
        "Content-Type": "text/plain",
        "x-oss-callback": ticket["headers"]["x-oss-callback"],
        "x-oss-callback-var": ticket["headers"]["x-oss-callback-var"],
        "x-oss-forbid-overwrite": "true",
    }
    url = urlsplit(upload["url"])
    assert upload["url"].startswith(f"{live.settings.OSS_PUBLIC_ENDPOINT}/")
    assert url.path.endswith(ticket["key"])
    query = parse_qs(url.query)
    if version == "v4":
        assert query["x-oss-signature-version"] == ["OSS4-HMAC-SHA256"]
        assert query["x-oss-credential"][0].startswith("STS.")
        assert "x-oss-security-token" in query
    else:
        assert query["OSSAccessKeyId"][0].startswith("STS.")
        assert "security-token" in query and "Signature" in query
    # The server's own OSS endpoint (HeadObject, DeleteObject) is unreachable from here on: an
    # accepted callback proves that it made no HeadObject.
    settings.OSS_ENDPOINT = UNREACHABLE

    response = put(upload, DATA)
    settings.OSS_ENDPOINT = live.emulator.endpoint
    assert response.status_code == 200, response.text
    answer = response.json()
    row = Upload.objects.get()
    assert answer["ok"] is True
    assert answer["upload"]["id"] == row.pk
    assert (row.owner_id, row.key, row.size, row.content_type) == (
        user.pk,
        ticket["key"],
        len(DATA),
        "text/plain",
    )
    assert row.etag == response.headers["ETag"].strip('"')
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.USED
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_used, usage.objects_used, usage.bytes_reserved) == (len(DATA), 1, 0)
    assert live.root_bucket().get_object(ticket["key"]).read() == DATA


def test_the_same_callback_through_sts_mode_needs_the_head_object(live, user, settings):
    # The control of the test above: an STS ticket's callback cannot be decided without OSS.
    ticket = live.ticket(user, filename="a.txt", size=len(DATA), content_type="text/plain")
    bucket = live.bucket(user)
    settings.OSS_ENDPOINT = UNREACHABLE
    result = bucket.put_object(
        ticket["key"], DATA, headers={**ticket["headers"], "Content-Type": "text/plain"}
    )
    settings.OSS_ENDPOINT = live.emulator.endpoint
    assert result.status == 203
    assert Upload.objects.count() == 0


def test_oss2_put_object_with_url_uses_the_ticket_as_is(live, user):
    ticket = url_ticket(live, user)
    upload = ticket["upload"]
    client = oss2.Bucket(oss2.AnonymousAuth(), live.settings.OSS_PUBLIC_ENDPOINT, ticket["bucket"])
    result = client.put_object_with_url(upload["url"], DATA, headers=upload["headers"])
    assert result.status == 200
    assert json.loads(result.resp.read())["ok"] is True
    assert Upload.objects.get().key == ticket["key"]


def test_a_second_put_to_the_same_url_cannot_overwrite(live, user):
    ticket = url_ticket(live, user)
    assert put(ticket["upload"], DATA).status_code == 200
    again = put(ticket["upload"], b"other bytes of the same size!!!"[: len(DATA)])
    assert again.status_code == 409
    assert "<Code>FileAlreadyExists</Code>" in again.text
    assert live.root_bucket().get_object(ticket["key"]).read() == DATA
    assert Upload.objects.get().size == len(DATA)


def _edited_callback(ticket) -> str:
    spec = json.loads(base64.b64decode(ticket["headers"]["x-oss-callback"]))
    spec["callbackBody"] = spec["callbackBody"].replace("size=${size}", "size=1")
    return base64.b64encode(json.dumps(spec).encode()).decode()


@pytest.mark.parametrize("version", ["v1", "v4"])
@pytest.mark.parametrize(
    "edit",
    [
        "content_type",
        "callback",
        "callback_var",
        "no_callback",
        "no_forbid_overwrite",
        "public_acl",
        "other_key",
        "callback_in_query",
    ],
)
def test_any_edit_is_refused_by_oss_and_nothing_is_stored(live, user, settings, version, edit):
    settings.OSS_SIGNATURE_VERSION = version
    ticket = url_ticket(live, user)
    upload = ticket["upload"]
    other_key = ticket["key"].replace(".txt", "-2.txt")
    changes: dict = {}
    url = None
    if edit == "content_type":
        changes["Content-Type"] = "text/html"
    elif edit == "callback":
        changes["x-oss-callback"] = _edited_callback(ticket)
    elif edit == "callback_var":
        variables = {"x:ticket": "0" * 32 + ".forged"}
        changes["x-oss-callback-var"] = base64.b64encode(json.dumps(variables).encode()).decode()
    elif edit == "no_callback":
        changes["x-oss-callback"] = None
        changes["x-oss-callback-var"] = None
    elif edit == "no_forbid_overwrite":
        changes["x-oss-forbid-overwrite"] = None
    elif edit == "public_acl":
        changes["x-oss-object-acl"] = "public-read"
    elif edit == "other_key":
        url = upload["url"].replace(ticket["key"].rsplit("/", 1)[1], other_key.rsplit("/", 1)[1])
    elif edit == "callback_in_query":
        url = upload["url"] + "&callback=" + _edited_callback(ticket)
    response = put(upload, DATA, url=url, **changes)
    assert response.status_code == 403, response.text
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text
    nothing_happened(live, user, ticket, other_key)


def test_a_larger_file_is_stored_by_oss_then_refused_and_removed(live, user):
    """A presigned PUT cannot bound the body's length (V1 signs no Content-Length): the size
    OSS puts into the fixed template decides, and the refused object is removed at once."""
    ticket = url_ticket(live, user)
    response = put(ticket["upload"], DATA + b"!")
    assert response.status_code == 200
    answer = response.json()
    assert answer["ok"] is False
    assert answer["error"]["code"] == "size_mismatch"
    assert answer["object_removed"] is True
    assert live.root_bucket().object_exists(ticket["key"]) is False
    assert Upload.objects.count() == 0
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_used, usage.bytes_reserved, usage.objects_reserved) == (0, 0, 0)


def test_an_expired_url_is_refused(live, user):
    ticket = url_ticket(live, user)
    live.emulator.clock.advance(live.settings.UPLOAD_TICKET_TTL_SECONDS + 60)
    response = put(ticket["upload"], DATA)
    live.emulator.clock.reset()
    assert response.status_code == 403
    assert "<Code>" in response.text
    assert live.root_bucket().object_exists(ticket["key"]) is False
    assert Upload.objects.count() == 0


def test_the_ticket_lives_no_longer_than_its_signing_credentials(live, user, settings):
    settings.UPLOAD_TICKET_TTL_SECONDS = 10 * 24 * 3600
    ticket = url_ticket(live, user)
    credentials = live.api("GET", "/api/sts/credentials/?scope=write", user).json()
    row = UploadTicket.objects.get(pk=ticket["id"])
    assert row.mode == UploadTicket.Mode.URL
    assert row.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") == credentials["Expiration"]


def test_a_suspended_user_gets_no_url(live, user):
    user.is_suspended = True
    user.save(update_fields=["is_suspended"])
    response = live.api(
        "POST",
        "/api/uploads/tickets/",
        user,
        json={"filename": "a.txt", "size": 3, "content_type": "text/plain", "mode": "url"},
    )
    assert response.status_code == 403
    assert UploadTicket.objects.count() == 0


def test_an_unknown_mode_is_a_400(live, user):
    response = live.api(
        "POST",
        "/api/uploads/tickets/",
        user,
        json={"filename": "a.txt", "size": 3, "content_type": "text/plain", "mode": "ftp"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["mode"]
    assert UploadTicket.objects.count() == 0


@pytest.mark.parametrize("path", ["one statement", "ticket locked"])
def test_both_accept_paths_trust_a_url_callback_without_head_object(live, user, settings, path):
    """The accept statement and the ticket-locked path (taken here when the usage row has gone
    missing, and always on SQLite) decide a url callback alike: accepted from its facts."""
    ticket = url_ticket(live, user)
    if path == "ticket locked":
        StorageUsage.objects.filter(user=user).delete()
    settings.OSS_ENDPOINT = UNREACHABLE
    body = callback_body(ticket, etag="0123456789ABCDEF0123456789ABCDEF", size=5, mime="text/plain")
    with CaptureQueriesContext(connection) as queries:
        answer = callback_handle(
            body=body,
            content_type="application/x-www-form-urlencoded",
            bucket_header=live.settings.OSS_BUCKET,
        )
    assert answer.accepted, answer.body
    assert (len(queries) == 1) is (path == "one statement")
    row = Upload.objects.get()
    assert (row.size, row.etag, row.content_type) == (
        5,
        "0123456789ABCDEF0123456789ABCDEF",
        "text/plain",
    )
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.USED
