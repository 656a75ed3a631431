"""Only a ticket's own key is ever removed, and only by a callback carrying that ticket.

The attack: user A uploads to A's own ticket key with an edited x-oss-callback whose body names
B's unrecorded object and its ETag. OSS signs that body genuinely (it signs whatever template the
app sent), so the signature proves only that OSS sent it, never which key it names. Such a
callback is refused and recorded; the object it names is left for the sweep."""

from __future__ import annotations

import base64
import json

import oss2
import pytest

from uploads.models import CallbackRefusal, Upload, UploadTicket

pytestmark = pytest.mark.django_db(transaction=True)
# The users' credentials upload only with it (policies/templates).
NO_OVERWRITE = {"x-oss-forbid-overwrite": "true"}


def _exists(live, key: str) -> bool:
    try:
        live.root_bucket().head_object(key)
    except oss2.exceptions.NotFound:
        return False
    return True


def _edited_callback(live, ticket: dict, *, names: str, etag: str, token: str) -> dict:
    """The ticket's callback headers with a body template naming `names` and `etag` literally."""
    callback = {
        "callbackUrl": live.callback_url(),
        "callbackBody": f"bucket=${{bucket}}&object={names}&etag={etag}&size=${{size}}"
        f"&mimeType=${{mimeType}}&ticket={token}",
        "callbackBodyType": "application/x-www-form-urlencoded",
    }
    return {
        **ticket["headers"],
        "x-oss-callback": base64.b64encode(json.dumps(callback).encode()).decode(),
    }


@pytest.mark.parametrize("token", ["${x:ticket}", "garbage"], ids=["own-ticket", "no-ticket"])
def test_a_callback_naming_another_users_unrecorded_object_deletes_nothing(
    live, user, other_user, token
):
    # B's object with no row: uploaded without a callback (as when B's callback failed).
    victim_key = f"users/{other_user.public_id}/diary.txt"
    stored = live.bucket(other_user).put_object(
        victim_key, b"dear diary", headers={"Content-Type": "text/plain", **NO_OVERWRITE}
    )
    etag = stored.etag.upper()

    ticket = live.ticket(user, filename="a.txt", size=5, content_type="text/plain")
    headers = _edited_callback(live, ticket, names=victim_key, etag=etag, token=token)
    result = live.bucket(user).put_object(
        ticket["key"], b"hello", headers={**headers, "Content-Type": "text/plain"}
    )
    answer = json.loads(result.resp.read())

    assert answer["ok"] is False
    assert answer["object_removed"] is False
    assert _exists(live, victim_key)
    refusal = CallbackRefusal.objects.get()
    assert (refusal.key, refusal.object_removed) == (victim_key, False)
    assert refusal.reason == ("ticket_mismatch" if token.startswith("$") else "no_ticket")
    # A's own upload is not decided by a callback that names another key: it waits, stored,
    # for a confirmation or the sweep.
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.ISSUED
    assert _exists(live, ticket["key"])
    assert Upload.objects.count() == 0
