"""The limit of trusting url and form callbacks without a HeadObject, written as the attack.

OSS signs whatever callback an upload carries. A user who holds write credentials (or any
bucket of their own) can make OSS sign a callback with a hand-written body that names their
own url ticket and states false facts. What holds: the MAC binds the ticket to its owner,
bucket and key, so such a lie can only be about that ticket's own key; it cannot name another
key or claim the shortcut for an STS ticket. The row it leaves is one the sweep re-checks
(facts from the callback body only)."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import oss2
import pytest

from uploads.models import CallbackRefusal, StorageUsage, Upload, UploadTicket
from uploads.sweep import uploads_sweep

pytestmark = pytest.mark.django_db(transaction=True)


def forged_callback(live, *, key: str, token: str, size: int, mime: str) -> dict[str, str]:
    """An x-oss-callback the client wrote itself: literal facts instead of OSS's variables."""
    body = (
        f"bucket=${{bucket}}&object={quote(key, safe='')}&etag=${{etag}}&size={size}"
        f"&mimeType={quote(mime, safe='')}&ticket=${{x:ticket}}"
    )
    spec = {"callbackUrl": live.callback_url(), "callbackBody": body}
    return {
        "x-oss-callback": base64.b64encode(json.dumps(spec).encode()).decode(),
        "x-oss-callback-var": base64.b64encode(json.dumps({"x:ticket": token}).encode()).decode(),
        "x-oss-forbid-overwrite": "true",  # the session policy requires it of every upload
    }


def url_ticket(live, user, **extra):
    return live.ticket(
        user, filename="p.png", size=10, content_type="image/png", mode="url", **extra
    )


def test_a_lie_about_the_own_ticket_is_confined_to_its_key(live, user):
    ticket = url_ticket(live, user)
    token = ticket["callback"]["callbackVar"]["x:ticket"]
    html = b"<script>alert(1)</script>" * 120  # 3000 bytes of text/html
    headers = forged_callback(live, key=ticket["key"], token=token, size=10, mime="image/png")
    result = live.bucket(user).put_object(
        ticket["key"], html, headers={**headers, "Content-Type": "text/html"}
    )
    assert result.status == 200
    # The known limit: the row states what the forged body said.
    row = Upload.objects.get()
    assert (row.key, row.owner_id, row.size, row.content_type) == (
        ticket["key"],
        user.pk,
        10,
        "image/png",
    )
    # ... about the ticket's own key only, whose real object a HeadObject shows at once.
    real = live.root_bucket().head_object(ticket["key"])
    assert (real.content_length, real.content_type) == (len(html), "text/html")


def test_the_sweep_undoes_a_lie_within_its_next_run(live, user, settings):
    ticket = url_ticket(live, user)
    token = ticket["callback"]["callbackVar"]["x:ticket"]
    html = b"<script>alert(1)</script>" * 120
    headers = forged_callback(live, key=ticket["key"], token=token, size=10, mime="image/png")
    live.bucket(user).put_object(
        ticket["key"], html, headers={**headers, "Content-Type": "text/html"}
    )
    assert Upload.objects.get().verified_at is None  # vouched for by the callback body alone
    settings.SWEEP_GRACE_SECONDS = 0

    assert uploads_sweep().refused == 1

    row = Upload.objects.get()
    assert row.status == Upload.Status.DELETED
    refusal = CallbackRefusal.objects.get(key=ticket["key"])
    assert (refusal.reason, refusal.object_removed) == ("size_mismatch", True)
    with pytest.raises(oss2.exceptions.NotFound):
        live.root_bucket().head_object(ticket["key"])
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_used, usage.objects_used) == (0, 0)


def test_a_ticket_token_cannot_name_another_key(live, user, other_user):
    mine = url_ticket(live, user)
    my_other = url_ticket(live, user)
    theirs = url_ticket(live, other_user)
    token = mine["callback"]["callbackVar"]["x:ticket"]
    bucket = live.bucket(user)
    for n, target in enumerate((my_other, theirs)):
        headers = forged_callback(live, key=target["key"], token=token, size=10, mime="image/png")
        result = bucket.put_object(
            f"{mine['key']}.{n}", b"0123456789", headers={**headers, "Content-Type": "image/png"}
        )
        assert result.status == 200
        answer = json.loads(result.resp.read())
        assert answer["ok"] is False
        assert answer["error"]["code"] == "ticket_mismatch"
        assert answer["object_removed"] is False
    assert Upload.objects.count() == 0
    assert set(CallbackRefusal.objects.values_list("key", flat=True)) == {
        my_other["key"],
        theirs["key"],
    }
    assert set(UploadTicket.objects.values_list("status", flat=True)) == {"issued"}


def test_an_sts_ticket_cannot_claim_the_url_shortcut(live, user):
    ticket = live.ticket(user, filename="p.png", size=10, content_type="image/png")
    token = ticket["callback"]["callbackVar"]["x:ticket"]
    ticket_hex, mac = token.split(".")
    claimed = f"{ticket_hex}.url.{mac}"
    headers = forged_callback(live, key=ticket["key"], token=claimed, size=10, mime="image/png")
    result = live.bucket(user).put_object(
        ticket["key"], b"x" * 3000, headers={**headers, "Content-Type": "text/html"}
    )
    assert result.status == 200
    answer = json.loads(result.resp.read())
    assert answer["ok"] is False
    assert answer["error"]["code"] == "ticket_mismatch"
    assert Upload.objects.count() == 0
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.ISSUED


def test_the_honest_sts_path_still_checks_the_object(live, user):
    # The same forged body on an STS ticket (with its real token): the HeadObject catches it.
    ticket = live.ticket(user, filename="p.png", size=10, content_type="image/png")
    token = ticket["callback"]["callbackVar"]["x:ticket"]
    headers = forged_callback(live, key=ticket["key"], token=token, size=10, mime="image/png")
    result = live.bucket(user).put_object(
        ticket["key"], b"x" * 3000, headers={**headers, "Content-Type": "text/html"}
    )
    answer = json.loads(result.resp.read())
    assert answer["ok"] is False
    assert answer["error"]["code"] == "size_mismatch"
    assert Upload.objects.count() == 0
