"""Reconciliation against the emulator over real HTTP (objects planted with oss2 and the root key).

One drifted data set (`drift`) holds every kind of drift at once, plus foreign keys that must
never be touched. The tests use a bucket of their own, emptied before each test, so objects left
by other tests in the shared emulator cannot show up as findings.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass
from datetime import timedelta

import oss2
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import User
from reports.models import ReconciliationFinding, ReconciliationRun
from reports.reconciliation import reconciliation_run
from tests.factories import StorageUsageFactory, UploadFactory, UploadTicketFactory, UserFactory
from uploads.models import StorageUsage, Upload, UploadTicket

BUCKET = "reconcile-tests"
FOREIGN = ("other/x.txt", "users-archive/y", "usersfoo", "users")
GHOST = "f" * 32  # a public id no user has

pytestmark = pytest.mark.django_db


@pytest.fixture
def oss_root(alibaba, settings):
    """oss2 with the emulator's root key on a bucket emptied for this test."""
    settings.OSS_BUCKET = BUCKET
    settings.RECONCILE_GRACE_SECONDS = 0
    settings.RECONCILE_STRAY_OBJECTS = "adopt"
    settings.RECONCILE_PAGE_SIZE = 3  # several pages even for a handful of keys
    auth = oss2.Auth(settings.ALIBABA_ACCESS_KEY_ID, settings.ALIBABA_ACCESS_KEY_SECRET)
    bucket = oss2.Bucket(auth, alibaba.endpoint, BUCKET)
    try:
        bucket.create_bucket()
    except oss2.exceptions.ServerError as exc:
        assert exc.code == "BucketAlreadyExists"
    for obj in oss2.ObjectIterator(bucket):
        bucket.delete_object(obj.key)
    return bucket


def put(bucket: oss2.Bucket, key: str, size: int, content_type: str = "image/jpeg") -> None:
    bucket.put_object(key, b"x" * size, headers={"Content-Type": content_type})


def listing(bucket: oss2.Bucket) -> list[tuple[str, int]]:
    return [(o.key, o.size) for o in oss2.ObjectIterator(bucket)]


def row(owner: User, key: str, size: int, status: str = "active") -> Upload:
    """The row a callback records for `put(bucket, key, size)` (same size and ETag)."""
    return UploadFactory(
        owner=owner,
        bucket=BUCKET,
        key=key,
        size=size,
        etag=hashlib.md5(b"x" * size).hexdigest().upper(),  # noqa: S324 (OSS's ETag)
        content_type="image/jpeg",
        status=status,
    )


def ticket(owner: User, key: str, reserved: int, expires_in: int) -> UploadTicket:
    return UploadTicketFactory(
        owner=owner,
        bucket=BUCKET,
        key=key,
        filename="f.jpg",
        declared_size=reserved,
        content_type="image/jpeg",
        expires_at=timezone.now() + timedelta(seconds=expires_in),
    )


def store_state() -> dict:
    return {
        "uploads": sorted(
            Upload.objects.values_list("owner__username", "key", "status", "size", "content_type")
        ),
        "usage": sorted(
            StorageUsage.objects.values_list(
                "user__username", "objects_used", "bytes_used", "objects_reserved", "bytes_reserved"
            )
        ),
        "tickets": sorted(UploadTicket.objects.values_list("key", "status", "reserved_bytes")),
    }


def findings(run: ReconciliationRun) -> list[tuple[str, str, str]]:
    return sorted(run.findings.values_list("kind", "action", "key"))


@dataclass
class Drift:
    alice: User
    bob: User
    carol: User
    a: str  # alice's prefix
    b: str
    c: str


@pytest.fixture
def drift(oss_root) -> Drift:
    alice, bob, carol = (UserFactory(username=n) for n in ("alice", "bob", "carol"))
    a, b, c = (f"users/{u.public_id}/" for u in (alice, bob, carol))
    for key in FOREIGN:
        put(oss_root, key, 7)
    put(oss_root, a + "ok.jpg", 100)
    row(alice, a + "ok.jpg", 100)
    put(oss_root, a + "2026/stray.jpg", 321, "image/png")  # callback never came
    put(oss_root, b + "stray2.bin", 40, "application/pdf")
    put(oss_root, f"users/{GHOST}/lost.txt", 9)  # no such user
    put(oss_root, "users/loose.txt", 3)  # in no user's prefix at all
    put(oss_root, a + "back.jpg", 70)
    row(alice, a + "back.jpg", 70, status="missing")  # marked missing, object is back
    put(oss_root, a + "deleted.jpg", 60)
    row(alice, a + "deleted.jpg", 60, status="deleted")  # the delete left the object
    put(oss_root, a + "pending.jpg", 80)
    ticket(alice, a + "pending.jpg", 2000, expires_in=600)  # callback may still come
    row(alice, a + "vanished.jpg", 500)  # object gone
    row(carol, c + "only.jpg", 50)  # carol has no object at all
    ticket(alice, a + "expired.jpg", 1000, expires_in=-60)  # never called back
    StorageUsageFactory(
        user=alice, objects_used=2, bytes_used=600, objects_reserved=2, bytes_reserved=3000
    )
    StorageUsageFactory(user=carol, objects_used=1, bytes_used=50)
    return Drift(alice=alice, bob=bob, carol=carol, a=a, b=b, c=c)


def expected_findings(d: Drift, *, apply: bool) -> list[tuple[str, str, str]]:
    def act(dry: str, done: str) -> str:
        return done if apply else dry

    return sorted(
        [
            ("deleted_still_stored", act("would_delete", "deleted"), d.a + "deleted.jpg"),
            ("expired_ticket", act("would_expire", "expired"), d.a + "expired.jpg"),
            ("missing_object", act("would_mark_missing", "marked_missing"), d.a + "vanished.jpg"),
            ("missing_object", act("would_mark_missing", "marked_missing"), d.c + "only.jpg"),
            ("reappeared_object", act("would_restore", "restored"), d.a + "back.jpg"),
            ("stray_object", act("would_adopt", "adopted"), d.a + "2026/stray.jpg"),
            ("stray_object", act("would_adopt", "adopted"), d.b + "stray2.bin"),
            ("unowned_object", "reported", f"users/{GHOST}/lost.txt"),
            ("unowned_object", "reported", "users/loose.txt"),
        ]
    )


def test_dry_run_finds_every_drift_and_changes_nothing(drift, oss_root):
    state, objects = store_state(), listing(oss_root)
    run = reconciliation_run()
    assert findings(run) == expected_findings(drift, apply=False)
    assert store_state() == state
    assert listing(oss_root) == objects
    run.refresh_from_db()
    assert (run.status, run.applied, run.prefix) == ("finished", False, "users/")
    assert (run.stray_objects, run.unowned_objects, run.missing_objects) == (2, 2, 2)
    assert (run.expired_tickets, run.other_findings, run.repaired, run.errors) == (1, 2, 0, 0)
    assert run.skipped_recent == 1  # pending.jpg: its ticket is still valid
    # Listed: 8 objects under users/ (the 4 foreign keys are never listed); rows of 3 users.
    assert (run.objects_listed, run.rows_checked) == (8, 5)


def state_after_apply(d: Drift) -> dict:
    a, b = d.a, d.b
    return {
        "uploads": sorted(
            [
                ("alice", a + "ok.jpg", "active", 100, "image/jpeg"),
                ("alice", a + "2026/stray.jpg", "active", 321, "image/png"),  # adopted
                ("alice", a + "back.jpg", "active", 70, "image/jpeg"),  # restored
                ("alice", a + "deleted.jpg", "deleted", 60, "image/jpeg"),
                ("alice", a + "vanished.jpg", "missing", 500, "image/jpeg"),
                ("bob", b + "stray2.bin", "active", 40, "application/pdf"),  # adopted
                ("carol", d.c + "only.jpg", "missing", 50, "image/jpeg"),
            ]
        ),
        "usage": [
            # alice: 600 - 500 (vanished) + 321 (adopted) + 70 (restored); the expired
            # ticket's 1000 bytes released, the pending ticket's 2000 kept.
            ("alice", 3, 491, 1, 2000),
            ("bob", 1, 40, 0, 0),
            ("carol", 0, 0, 0, 0),
        ],
        "tickets": sorted([(a + "pending.jpg", "issued", 2000), (a + "expired.jpg", "expired", 0)]),
    }


def test_apply_repairs_each_drift(drift, oss_root):
    a, b = drift.a, drift.b
    run = reconciliation_run(apply=True)
    assert findings(run) == expected_findings(drift, apply=True)
    assert run.repaired == 7 and run.errors == 0
    assert store_state() == state_after_apply(drift)
    adopted = Upload.objects.get(key=a + "2026/stray.jpg")
    assert (adopted.filename, adopted.metadata) == ("stray.jpg", {"adopted_by": "reconciliation"})
    assert len(adopted.etag) == 32
    assert listing(oss_root) == sorted(
        [(k, 7) for k in FOREIGN]  # untouched
        + [
            (a + "2026/stray.jpg", 321),
            (a + "back.jpg", 70),
            (a + "ok.jpg", 100),
            (a + "pending.jpg", 80),
            (b + "stray2.bin", 40),
            (f"users/{GHOST}/lost.txt", 9),  # reported, kept: the policy is adopt
            ("users/loose.txt", 3),
        ]
    )


def test_interrupted_apply_resumes_to_the_same_result(drift, oss_root):
    reports = []

    def interrupt_on_second_page(state):
        reports.append(state.objects_listed)
        if state.objects_listed >= 6:  # two pages of three keys listed and repaired
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reconciliation_run(apply=True, progress=interrupt_on_second_page)
    first = ReconciliationRun.objects.get()
    assert first.status == "interrupted"
    assert 0 < first.repaired < 7
    assert store_state() != state_after_apply(drift)
    again = reconciliation_run(apply=True)
    assert again.status == "finished"
    assert first.repaired + again.repaired == 7
    assert store_state() == state_after_apply(drift)


def test_second_apply_changes_nothing(drift, oss_root):
    reconciliation_run(apply=True)
    state, objects = store_state(), listing(oss_root)
    again = reconciliation_run(apply=True)
    assert findings(again) == [
        ("unowned_object", "reported", f"users/{GHOST}/lost.txt"),
        ("unowned_object", "reported", "users/loose.txt"),
    ]
    assert again.repaired == 0
    assert store_state() == state
    assert listing(oss_root) == objects


def test_delete_policy_removes_strays_and_unowned_but_never_foreign_keys(drift, oss_root, settings):
    settings.RECONCILE_STRAY_OBJECTS = "delete"
    a = drift.a
    dry = reconciliation_run()
    assert ("stray_object", "would_delete", a + "2026/stray.jpg") in findings(dry)
    assert ("unowned_object", "would_delete", "users/loose.txt") in findings(dry)
    run = reconciliation_run(apply=True)
    assert sorted(k for k, a_, _ in findings(run) if a_ == "deleted") == [
        "deleted_still_stored",
        "stray_object",
        "stray_object",
        "unowned_object",
        "unowned_object",
    ]
    assert not Upload.objects.filter(key__endswith="stray.jpg").exists()
    assert listing(oss_root) == sorted(
        [(k, 7) for k in FOREIGN]
        + [(a + "back.jpg", 70), (a + "ok.jpg", 100), (a + "pending.jpg", 80)]
    )
    assert findings(reconciliation_run(apply=True)) == []


def test_prefix_narrows_the_run_to_one_user(drift, oss_root):
    run = reconciliation_run(prefix=drift.b, apply=True)
    assert findings(run) == [("stray_object", "adopted", drift.b + "stray2.bin")]
    # alice's drift is untouched
    assert Upload.objects.get(key=drift.a + "vanished.jpg").status == "active"
    assert not Upload.objects.filter(key=drift.a + "2026/stray.jpg").exists()
    run = reconciliation_run(prefix=drift.a + "2026/")
    assert findings(run) == [("stray_object", "would_adopt", drift.a + "2026/stray.jpg")]


@pytest.mark.parametrize("prefix", ["other/", "users-archive/", "", "user"])
def test_prefix_outside_the_managed_root_is_refused(drift, oss_root, prefix):
    if prefix == "":  # empty means the whole managed root, which is allowed
        assert reconciliation_run(prefix=prefix).prefix == "users/"
        return
    with pytest.raises(CommandError, match="must lie inside the managed prefix 'users/'"):
        call_command("reconcile", "--prefix", prefix, "--apply", stdout=io.StringIO())
    assert len(listing(oss_root)) == 12


def test_recent_objects_are_left_alone(oss_root, settings):
    settings.RECONCILE_GRACE_SECONDS = 3600
    dana = UserFactory(username="dana")
    put(oss_root, f"users/{dana.public_id}/{uuid.uuid4().hex}.jpg", 5)
    run = reconciliation_run(apply=True)
    assert findings(run) == []
    assert run.skipped_recent == 1
    assert Upload.objects.count() == 0


def test_command_dry_run_output(drift, oss_root):
    out, err = io.StringIO(), io.StringIO()
    call_command("reconcile", stdout=out, stderr=err)
    text = out.getvalue()
    run = ReconciliationRun.objects.get()
    assert text.splitlines()[0] == (
        f"Reconciliation {run.pk} of {BUCKET}/users/ (managed root 'users/', stray objects: "
        "adopt): DRY RUN (nothing changed; --apply repairs)"
    )
    assert f"  would_adopt        stray_object         {drift.b}stray2.bin owner=bob size=40\n" in (
        text
    )
    assert text.splitlines()[-1] == (
        "Summary: 8 objects listed, 5 rows checked; 2 stray, 2 unowned, 2 missing, "
        "1 expired tickets, 2 other; 0 repaired, 0 errors, 1 left alone (recent or awaiting "
        "their callback)."
    )
    assert "reconcile [" in err.getvalue()
    assert ReconciliationFinding.objects.filter(run=run).count() == 9


def test_admin_shows_the_last_run_and_its_findings(drift, oss_root, client, staff_user):
    run = reconciliation_run(apply=True)
    client.force_login(staff_user)
    html = client.get("/admin/reports/reportsdashboard/").content.decode()
    assert f"Run {run.pk}</a> of <code>users/</code>" in html
    assert "2 stray, 2 unowned, 2 missing,\n      1 expired tickets; 7 repaired." in html
    page = client.get(f"/admin/reports/reconciliationrun/{run.pk}/change/").content.decode()
    assert drift.b + "stray2.bin" in page
    assert "Adopted: upload row created from a HEAD" in page
    listing_page = client.get(
        f"/admin/reports/reconciliationfinding/?run__id__exact={run.pk}&kind=missing_object"
    ).content.decode()
    assert drift.c + "only.jpg" in listing_page


def test_keys_with_spaces_and_non_ascii_round_trip(oss_root):
    erin = UserFactory(username="erin")
    key = f"users/{erin.public_id}/été/photo 1+2%.jpg"
    put(oss_root, key, 12)
    run = reconciliation_run(apply=True)
    assert findings(run) == [("stray_object", "adopted", key)]
    upload = Upload.objects.get()
    assert (upload.key, upload.filename, upload.size) == (key, "photo 1+2%.jpg", 12)
    assert findings(reconciliation_run(apply=True)) == []


def test_rows_whose_object_changed_are_checked_and_repaired(oss_root):
    frank = UserFactory(username="frank")
    grown, scripted, same = (f"users/{frank.public_id}/{n}" for n in ("a.jpg", "b.jpg", "c.jpg"))
    for key in (grown, scripted, same):
        put(oss_root, key, 5)
        row(frank, key, 5)
    StorageUsage.objects.create(user=frank, bytes_used=15, objects_used=3)
    put(oss_root, grown, 9)  # replaced behind the store's back, still an allowed image
    put(oss_root, scripted, 5, content_type="text/html")  # same size, other bytes: active content
    oss_root.put_object(scripted, b"<svg/>", headers={"Content-Type": "image/svg+xml"})

    assert findings(reconciliation_run()) == [
        ("changed_object", "would_repair", grown),
        ("changed_object", "would_repair", scripted),
    ]
    run = reconciliation_run(apply=True)

    assert sorted(findings(run), key=lambda f: f[2]) == [
        ("changed_object", "repaired", grown),
        ("changed_object", "refused", scripted),
    ]
    assert Upload.objects.get(key=grown).size == 9
    assert Upload.objects.get(key=scripted).status == Upload.Status.DELETED
    assert [key for key, _ in listing(oss_root)] == [grown, same]
    usage = StorageUsage.objects.get(user=frank)
    assert (usage.bytes_used, usage.objects_used) == (14, 2)
    assert findings(reconciliation_run(apply=True)) == []
