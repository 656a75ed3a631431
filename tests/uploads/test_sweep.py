"""`manage.py sweep_uploads`: the store and the bucket agree within minutes, looking only at what
can have changed since the last sweep."""

from __future__ import annotations

import threading
from datetime import timedelta

import oss2
import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

from tests.uploads.conftest import assert_store_agrees, callback_body
from tokens.models import CredentialGrant
from uploads.models import CallbackRefusal, StorageUsage, SweepMark, Upload, UploadTicket
from uploads.sweep import uploads_sweep

pytestmark = pytest.mark.django_db(transaction=True)
# The users' credentials upload only with it (policies/templates).
NO_OVERWRITE = {"x-oss-forbid-overwrite": "true"}


@pytest.fixture
def sweep(settings):
    settings.SWEEP_GRACE_SECONDS = 0  # objects made a moment ago are fair game in these tests
    return uploads_sweep


def _stray(live, user, name: str, data: bytes, content_type="text/plain") -> str:
    key = f"users/{user.public_id}/{name}"
    live.bucket(user).put_object(key, data, headers={"Content-Type": content_type, **NO_OVERWRITE})
    return key


def _gone(live, key: str) -> bool:
    try:
        live.root_bucket().head_object(key)
    except oss2.exceptions.NotFound:
        return True
    return False


def test_a_sweep_settles_lost_callbacks_strays_and_overdue_tickets(live, user, other_user, sweep):
    lost = live.upload_unheard(user, b"stored, unheard")
    broken = live.upload_unheard(user, b"more than declared", declared=4)
    never = live.ticket(user, filename="n.txt", size=9, content_type="text/plain")
    UploadTicket.objects.filter(pk=never["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    free = _stray(live, user, "free.txt", b"no ticket")
    page = _stray(live, user, "page.html", b"<script>", content_type="text/html")
    live.ticket(other_user, filename="t.txt", size=1, content_type="text/plain")  # usage row
    StorageUsage.objects.filter(user=other_user).update(max_bytes=10)
    too_big = _stray(live, other_user, "big.txt", b"x" * 20)

    result = sweep()

    assert result.ran
    assert (result.confirmed, result.refused, result.expired, result.adopted) == (1, 1, 1, 1)
    assert result.deleted == 2  # page.html (a type no ticket allows) and other_user's big.txt
    statuses = {str(pk): status for pk, status in UploadTicket.objects.values_list("id", "status")}
    assert [statuses[t["id"]] for t in (lost, broken, never)] == ["used", "refused", "expired"]
    adopted = Upload.objects.get(key=free)
    assert (adopted.metadata, adopted.verified_at is not None) == ({"adopted_by": "sweep"}, True)
    assert _gone(live, broken["key"]) and _gone(live, page) and _gone(live, too_big)
    assert CallbackRefusal.objects.get(key=broken["key"]).object_removed is True
    assert_store_agrees(live, user)
    assert_store_agrees(live, other_user)

    again = sweep()  # nothing left to do, and the mark moved
    assert (again.confirmed, again.refused, again.adopted, again.deleted) == (0, 0, 0, 0)
    assert again.since is not None


def test_the_delete_policy_deletes_strays(live, user, sweep, settings):
    settings.RECONCILE_STRAY_OBJECTS = "delete"
    key = _stray(live, user, "free.txt", b"no ticket")
    assert sweep().deleted == 1
    assert _gone(live, key)
    assert Upload.objects.count() == 0
    assert_store_agrees(live, user)


def test_a_row_only_a_callback_body_vouched_for_is_checked(live, user, sweep, settings):
    # Callbacks without HeadObject (as URL-mode tickets have) record what the body says; here
    # the body understates the size the object has, within what the ticket declared.
    honest = live.ticket(user, filename="a.txt", size=20, content_type="text/plain")
    liar = live.ticket(user, filename="b.txt", size=5, content_type="text/plain")
    for ticket, data in ((honest, b"fifteen bytes!!"), (liar, b"nine byte")):
        live.root_bucket().put_object(ticket["key"], data, headers={"Content-Type": "text/plain"})
    settings.UPLOAD_CALLBACK_HEAD_CHECK = False
    for ticket in (honest, liar):
        body = callback_body(ticket, etag="0" * 32, size=3, mime="text/plain")
        assert live.post_callback(body).json()["ok"] is True
    settings.UPLOAD_CALLBACK_HEAD_CHECK = True
    assert Upload.objects.filter(verified_at__isnull=True).count() == 2

    result = sweep()

    assert (result.repaired, result.refused) == (1, 1)
    fixed = Upload.objects.get(key=honest["key"])
    assert (fixed.size, fixed.status, fixed.verified_at is not None) == (15, "active", True)
    refused = Upload.objects.get(key=liar["key"])
    assert refused.status == Upload.Status.DELETED  # 9 bytes on a 5-byte ticket
    assert CallbackRefusal.objects.get(key=liar["key"]).reason == "size_mismatch"
    assert _gone(live, liar["key"])
    assert_store_agrees(live, user)


def test_an_object_replaced_after_its_callback_is_repaired_or_refused(live, user, sweep):
    ticket = live.ticket(user, filename="a.txt", size=8, content_type="text/plain")
    put = live.bucket(user).put_object(
        ticket["key"], b"v1", headers={**ticket["headers"], "Content-Type": "text/plain"}
    )
    assert put.status == 200
    live.root_bucket().put_object(
        ticket["key"], b"v2 v2 v2", headers={"Content-Type": "text/plain"}
    )
    assert sweep().repaired == 1  # still within the ticket: the row follows the object
    assert Upload.objects.get().size == 8
    assert_store_agrees(live, user)
    live.root_bucket().put_object(ticket["key"], b"x" * 50, headers={"Content-Type": "text/plain"})
    assert sweep().refused == 1  # breaks the ticket: refused, removed, usage released
    assert _gone(live, ticket["key"])
    assert_store_agrees(live, user)


def test_only_users_active_since_the_last_sweep_are_looked_at(live, user, other_user, sweep):
    idle_key = _stray(live, other_user, "old.txt", b"idle")
    sweep()
    assert Upload.objects.get().key == idle_key  # the first sweep looks at everyone
    Upload.objects.all().delete()  # the store forgets it; only a full reconcile would notice
    CredentialGrant.objects.filter(user=other_user).update(
        created_at=timezone.now() - timedelta(days=2), expiration=timezone.now() - timedelta(days=1)
    )
    fresh_key = _stray(live, user, "new.txt", b"fresh")

    result = sweep()

    assert (result.users, result.adopted) == (1, 1)
    assert list(Upload.objects.values_list("key", flat=True)) == [fresh_key]


def test_a_sweep_finding_another_one_running_does_nothing(live, user, sweep):
    _stray(live, user, "free.txt", b"no ticket")
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:  # another instance's sweep holds the lock
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [0x5357_4550])
            assert cursor.fetchone()[0] is True
        result = sweep()
        assert result.ran is False
        assert Upload.objects.count() == 0
        assert not SweepMark.objects.exists()
    finally:
        with other.cursor() as cursor:  # now, not when the server notices the closed socket
            cursor.execute("SELECT pg_advisory_unlock(%s)", [0x5357_4550])
        other.close()
    assert sweep().adopted == 1


def test_sweeps_started_together_settle_everything_once(live, user, sweep):
    keys = [_stray(live, user, f"s{i}.txt", b"stray %d" % i) for i in range(6)]
    lost = [live.upload_unheard(user, b"lost %d" % i) for i in range(3)]
    results = []
    start = threading.Barrier(4)

    def run():
        start.wait()
        try:
            results.append(uploads_sweep())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4
    assert sum(r.adopted for r in results) == len(keys)
    assert sum(r.confirmed for r in results) == len(lost)
    assert Upload.objects.count() == len(keys) + len(lost)
    assert_store_agrees(live, user)


def test_the_command_reports_what_it_did(live, user, sweep, capsys):
    _stray(live, user, "free.txt", b"no ticket")
    call_command("sweep_uploads")
    out = capsys.readouterr().out
    assert out.startswith("Sweep: ")
    assert "1 adopted" in out
