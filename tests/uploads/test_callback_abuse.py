"""Forgeries and abuse of the callback endpoint change nothing they should not.

Forged requests (bad signature, tampering in transit, a key URL outside the allowed prefix) are
answered 403 and write or delete nothing. Genuine callbacks that break their ticket are refused:
a CallbackRefusal row, the object removed, the reservation released, and a 200 JSON answer the
app reads through OSS."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from datetime import timedelta

import oss2
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services import user_suspend
from emulator.callbacks import CallbackSigner
from tests.uploads.conftest import callback_body, png_bytes
from uploads.models import CallbackRefusal, StorageUsage, Upload, UploadTicket
from uploads.services import callback_handle, upload_answer

pytestmark = pytest.mark.django_db(transaction=True)


def _b64json(document) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def _exists(live, key: str) -> bool:
    try:
        live.root_bucket().head_object(key)
    except oss2.exceptions.NotFound:
        return False
    return True


def _answer(result) -> dict:
    assert result.status == 200  # refusals are relayed: OSS turns any other status into 203
    return json.loads(result.resp.read())


@pytest.fixture
def stored(live, user):
    """A ticket whose object is stored without a callback, for hand-made callbacks."""
    data = b"twelve bytes"
    ticket = live.ticket(user, filename="a.txt", size=len(data), content_type="text/plain")
    put = live.root_bucket().put_object(ticket["key"], data, headers={"Content-Type": "text/plain"})
    body = callback_body(ticket, etag=put.etag.upper(), size=len(data), mime="text/plain")
    return ticket, body


def _nothing_changed(live, ticket) -> None:
    assert Upload.objects.count() == 0
    assert CallbackRefusal.objects.count() == 0
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.ISSUED
    assert _exists(live, ticket["key"])


def test_hand_made_genuine_callback_is_accepted(live, stored):
    # The control for the forgeries below: the same request, correctly signed, works.
    ticket, body = stored
    response = live.post_callback(body)
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert Upload.objects.get().key == ticket["key"]


def test_an_accepted_callback_is_one_database_statement(live, stored, user):
    """The common case: lock, quota, ticket and row in one autocommit statement (no health
    check, BEGIN or COMMIT round trips); the ticket-locked path only decides the rest."""
    ticket, body = stored
    with CaptureQueriesContext(connection) as queries:
        answer = callback_handle(
            body=body,
            content_type="application/x-www-form-urlencoded",
            bucket_header=live.settings.OSS_BUCKET,
        )
    assert answer.accepted
    assert len(queries) == 1, [q["sql"][:60] for q in queries]
    upload = Upload.objects.get()
    assert answer.body == upload_answer(upload)
    assert (upload.owner_id, upload.key, upload.size, upload.content_type, upload.filename) == (
        user.pk,
        ticket["key"],
        12,
        "text/plain",
        "a.txt",
    )
    assert upload.verified_at is not None  # from HeadObject, not from the body
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.USED
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_used, usage.objects_used, usage.bytes_reserved) == (12, 1, 0)
    assert usage.objects_reserved == 0


def test_signed_query_string_is_part_of_the_signature(live, stored):
    _ticket, body = stored
    response = live.post_callback(body, signed_query="a=1&b=%2F", query="a=1&b=%2F")
    assert response.status_code == 200
    assert response.json()["ok"] is True


def test_bad_signature_is_refused_and_changes_nothing(live, stored):
    ticket, body = stored
    response = live.post_callback(body, signer=CallbackSigner(None))  # someone else's key
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "callback_signature_invalid"
    _nothing_changed(live, ticket)


@pytest.mark.parametrize(
    "tamper",
    [
        {"body_sent": b"tampered"},
        {"signed_path": "/elsewhere/"},
        {"query": "x=1"},
        {"signed_query": "x=1", "query": "x=2"},
    ],
    ids=["body", "path", "query-added", "query-changed"],
)
def test_tampering_in_transit_is_refused(live, stored, tamper):
    ticket, body = stored
    if "body_sent" in tamper:
        tamper = {"body_sent": body.replace(b"size=12", b"size=1")}
    response = live.post_callback(body, **tamper)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "callback_signature_invalid"
    _nothing_changed(live, ticket)


def test_missing_headers_are_a_400(live, stored):
    ticket, body = stored
    import requests

    response = requests.post(live.callback_url(), data=body, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "callback_signature_missing"
    _nothing_changed(live, ticket)


def test_only_post_is_allowed(live, stored):
    import requests

    ticket, _body = stored
    response = requests.get(live.callback_url(), timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json() == {
        "error": {"code": "method_not_allowed", "message": 'Method "GET" not allowed.'}
    }
    _nothing_changed(live, ticket)


class _KeyServer:
    """A local HTTP server serving a PEM and counting requests."""

    def __init__(self, pem: bytes) -> None:
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(pem)))
                self.end_headers()
                self.wfile.write(pem)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_key_url_outside_the_allowed_prefix_is_refused_without_fetching(live, stored):
    ticket, body = stored
    forger = CallbackSigner(None)
    key_server = _KeyServer(forger.public_key_pem)
    try:
        response = live.post_callback(body, signer=forger, key_url=key_server.url + "key.pem")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "callback_key_refused"
        assert key_server.hits == []
    finally:
        key_server.close()
    _nothing_changed(live, ticket)


def test_allowed_key_url_is_fetched_once_then_cached(live, stored, settings, user):
    _ticket, body = stored
    key_server = _KeyServer(live.emulator.public_key_pem)
    settings.OSS_CALLBACK_KEY_URL_PREFIXES = [key_server.url]
    try:
        first = live.post_callback(body, key_url=key_server.url + "pub.pem")
        second = live.post_callback(body, key_url=key_server.url + "pub.pem")
    finally:
        key_server.close()
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert key_server.hits == ["/pub.pem"]


def test_replayed_callback_gives_the_same_single_row_and_answer(live, user):
    data = png_bytes(3, 4)
    ticket = live.ticket(user, filename="p.png", size=len(data), content_type="image/png")
    result = live.bucket(user).put_object(ticket["key"], data, headers=ticket["headers"])
    first = _answer(result)
    body = callback_body(ticket, etag=result.etag.upper(), size=len(data), width="3", height="4")
    again = [live.post_callback(body) for _ in range(2)]
    assert [r.status_code for r in again] == [200, 200]
    assert [r.json() for r in again] == [first, first]
    assert Upload.objects.count() == 1
    assert CallbackRefusal.objects.count() == 0
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_used, usage.objects_used) == (len(data), 1)


def test_another_users_ticket_is_refused_and_the_object_left_for_the_sweep(live, user, other_user):
    theirs = live.ticket(other_user, filename="x.txt", size=5, content_type="text/plain")
    key = f"users/{user.public_id}/mine.txt"
    result = live.bucket(user).put_object(
        key, b"hello", headers={**theirs["headers"], "Content-Type": "text/plain"}
    )
    answer = _answer(result)
    assert answer == {
        "ok": False,
        "error": {
            "code": "ticket_mismatch",
            "message": "The callback's ticket does not match this object.",
        },
        "key": key,
        "object_removed": False,
    }
    # The ticket does not bind this key, so this callback may not remove it: the sweep adopts
    # or deletes it (RECONCILE_STRAY_OBJECTS).
    assert _exists(live, key)
    assert UploadTicket.objects.get(pk=theirs["id"]).status == UploadTicket.Status.ISSUED
    assert Upload.objects.count() == 0


def test_key_no_ticket_names_is_refused_and_left_for_the_sweep(live, user):
    key = f"users/{user.public_id}/rogue.txt"
    callback = {
        "callbackUrl": live.callback_url(),
        "callbackBody": "bucket=${bucket}&object=${object}&etag=${etag}&size=${size}"
        "&mimeType=${mimeType}",
    }
    result = live.bucket(user).put_object(
        key,
        b"rogue",
        headers={
            "x-oss-callback": _b64json(callback),
            "x-oss-forbid-overwrite": "true",
            "Content-Type": "text/plain",
        },
    )
    answer = _answer(result)
    assert answer["ok"] is False
    assert answer["error"]["code"] == "no_ticket"
    assert answer["object_removed"] is False
    assert _exists(live, key)
    refusal = CallbackRefusal.objects.get()
    assert (refusal.reason, refusal.owner, refusal.object_removed) == ("no_ticket", user, False)


def test_callback_naming_someone_elses_recorded_object_deletes_nothing(live, user, other_user):
    # A genuinely signed callback whose (app-chosen) body names another user's stored upload.
    data = b"precious"
    ticket = live.ticket(other_user, filename="p.txt", size=len(data), content_type="text/plain")
    live.bucket(other_user).put_object(
        ticket["key"], data, headers={**ticket["headers"], "Content-Type": "text/plain"}
    )
    forged = callback_body(ticket, etag="0" * 32, size=1, mime="text/plain", ticket="garbage")
    response = live.post_callback(forged)
    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert response.json()["object_removed"] is False
    assert _exists(live, ticket["key"])
    assert Upload.objects.get().status == Upload.Status.ACTIVE


def _refused(live, user, ticket, data, *, content_type, code):
    result = live.bucket(user).put_object(
        ticket["key"], data, headers={**ticket["headers"], "Content-Type": content_type}
    )
    answer = _answer(result)
    assert answer["ok"] is False, answer
    assert answer["error"]["code"] == code
    assert answer["object_removed"] is True
    assert not _exists(live, ticket["key"])
    assert Upload.objects.count() == 0
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.REFUSED
    refusal = CallbackRefusal.objects.get()
    assert (refusal.reason, refusal.owner_id, refusal.object_removed) == (code, user.pk, True)
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_used, usage.bytes_reserved, usage.objects_reserved) == (0, 0, 0)
    return answer


def test_expired_ticket_is_refused(live, user):
    ticket = live.ticket(user, filename="a.txt", size=3, content_type="text/plain")
    bucket = live.bucket(user)
    UploadTicket.objects.filter(pk=ticket["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    live.bucket = lambda _user: bucket  # credentials fetched before the deadline passed
    _refused(live, user, ticket, b"abc", content_type="text/plain", code="ticket_expired")


def test_object_larger_than_declared_is_refused(live, user):
    ticket = live.ticket(user, filename="a.txt", size=3, content_type="text/plain")
    _refused(live, user, ticket, b"abcd", content_type="text/plain", code="size_mismatch")


def test_wrong_content_type_is_refused(live, user):
    ticket = live.ticket(user, filename="a.png", size=3, content_type="image/png")
    _refused(live, user, ticket, b"abc", content_type="text/html", code="type_mismatch")


def test_type_no_longer_allowed_is_refused(live, user, settings):
    ticket = live.ticket(user, filename="a.txt", size=3, content_type="text/plain")
    settings.UPLOAD_ALLOWED_CONTENT_TYPES = ["image/*"]
    _refused(live, user, ticket, b"abc", content_type="text/plain", code="type_not_allowed")


def test_over_quota_at_callback_is_refused(live, user):
    ticket = live.ticket(user, filename="a.txt", size=3, content_type="text/plain")
    StorageUsage.objects.filter(user=user).update(max_bytes=2)  # lowered by staff meanwhile
    _refused(live, user, ticket, b"abc", content_type="text/plain", code="quota_exceeded")


def test_suspended_owner_is_refused(live, user):
    ticket = live.ticket(user, filename="a.txt", size=3, content_type="text/plain")
    bucket = live.bucket(user)
    user_suspend(user=user, reason="abuse")
    live.bucket = lambda _user: bucket  # credentials obtained before the suspension
    _refused(live, user, ticket, b"abc", content_type="text/plain", code="owner_suspended")


def test_storage_down_during_a_refusal_is_recorded_not_raised(live, user, settings):
    ticket = live.ticket(user, filename="a.txt", size=3, content_type="text/plain")
    bucket = live.bucket(user)
    # The server's own OSS calls now go to a closed port; the app still reaches the emulator.
    settings.UPLOAD_CALLBACK_HEAD_CHECK = False
    settings.OSS_ENDPOINT = "http://127.0.0.1:9"
    result = bucket.put_object(
        ticket["key"], b"abcd", headers={**ticket["headers"], "Content-Type": "text/plain"}
    )
    answer = _answer(result)
    assert answer["ok"] is False
    assert answer["error"]["code"] == "size_mismatch"
    assert answer["object_removed"] is False
    refusal = CallbackRefusal.objects.get()
    assert (refusal.reason, refusal.object_removed) == ("size_mismatch", False)
    settings.OSS_ENDPOINT = live.emulator.endpoint
    assert _exists(live, ticket["key"])  # left for reconciliation, and the refusal says so


def test_storage_down_before_deciding_changes_nothing(live, stored, settings):
    ticket, body = stored
    settings.OSS_ENDPOINT = "http://127.0.0.1:9"
    response = live.post_callback(body)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert int(response.headers["Retry-After"]) > 0  # OSS retries a failed callback
    settings.OSS_ENDPOINT = live.emulator.endpoint
    _nothing_changed(live, ticket)


def test_second_callback_with_other_content_on_a_used_ticket(live, user):
    data = b"first"
    ticket = live.ticket(user, filename="a.txt", size=10, content_type="text/plain")
    put = live.bucket(user).put_object(
        ticket["key"], data, headers={**ticket["headers"], "Content-Type": "text/plain"}
    )
    assert _answer(put)["ok"] is True
    other = callback_body(ticket, etag="F" * 32, size=9, mime="text/plain")
    response = live.post_callback(other)
    assert response.status_code == 200
    assert response.json()["error"]["code"] == "ticket_used"
    assert response.json()["object_removed"] is False  # the key holds a recorded upload
    upload = Upload.objects.get()
    assert (upload.size, upload.status) == (len(data), Upload.Status.ACTIVE)
    assert _exists(live, ticket["key"])


def test_the_same_callback_delivered_in_parallel_records_one_upload(live, stored):
    from concurrent.futures import ThreadPoolExecutor

    _ticket, body = stored
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: live.post_callback(body), range(4)))
    assert [r.status_code for r in responses] == [200] * 4
    answers = [r.json() for r in responses]
    assert all(a == answers[0] for a in answers)
    assert answers[0]["ok"] is True
    assert Upload.objects.count() == 1
    assert CallbackRefusal.objects.count() == 0
