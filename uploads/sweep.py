"""`manage.py sweep_uploads`: keep the store and the bucket in agreement within minutes.

Built to run every minute. Its cost follows recent activity, never stored data: it looks only
at what can have changed since the last sweep that finished (SweepMark), which is

- the prefixes of users who held write credentials since then (the credentials ledger: a grant
  of the `write` or `readwrite` scope still valid after the mark), who hold an issued ticket,
  or whose callback was refused since then without its object being removed. Nothing else can
  have written under a user's prefix: OSS takes writes only with credentials or a ticket;
- issued tickets past their deadline (a partial index holds only issued tickets);
- rows whose size, ETag and type came from a callback body only (verified_at empty, a partial
  index again).

For each such user it lists the prefix (ListObjects) and compares it with their rows:
- a row whose object differs in size or ETag, or was never verified -> HeadObject and
  uploads.services.repairs.upload_verify (the row follows the object, or the upload is refused and
  removed, as its callback would have been);
- an object an issued ticket names -> confirmed with the callback's rules (uploads.confirmation)
  once it is older than SWEEP_GRACE_SECONDS (its callback may still be on its way);
- an object nothing names (a stray) -> RECONCILE_STRAY_OBJECTS: adopted and counted, or
  deleted; beyond the quota, or of a type no ticket allows, deleted either way. An object
  under a refused ticket's key is deleted (the ticket's verdict stands);
- an active row with no object -> marked missing, its usage released (after a HeadObject).
Overdue issued tickets are confirmed when their object exists and expired otherwise. Afterwards a
user's bytes_used + bytes_reserved cover every byte under their prefix and stay within quota.

Staff scopes (bucket_read_write, all) reach every prefix and are not followed here; `reconcile`
(the full pass) covers what they write.

Concurrency: one sweep at a time per database (a PostgreSQL advisory lock; a sweep that finds
it held returns at once), and every repair re-checks its row under the uploads lock order, so
cron overlaps, many instances and sweeps racing callbacks or confirmations are all safe. A sweep
that fails does not move the mark: the next one looks at the same window again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection
from django.utils import timezone

from accounts.models import User
from accounts.selectors import user_storage_prefix
from appserver import metrics
from tokens.models import CredentialGrant
from uploads import oss
from uploads.confirmation import ObjectMissing, ticket_settle
from uploads.models import CallbackRefusal, SweepMark, Upload, UploadTicket
from uploads.services import repairs, ticket_expire, upload_adopt, upload_set_missing

logger = logging.getLogger(__name__)

MARK = "uploads"
WRITE_SCOPES = ("write", "readwrite")
# Any constant, the same for every instance: the key of the PostgreSQL advisory lock.
_LOCK_KEY = 0x5357_4550  # "SWEP"
# Clocks of instances differ a little: the window starts this much before the last sweep did.
_CLOCK_SKEW = timedelta(minutes=1)
# STS's longest session: a grant created earlier than this before the mark has expired by it.
_LONGEST_CREDENTIALS = timedelta(hours=12)
# Users whose prefixes are listed together (side by side, by _LISTERS threads), whose rows
# and tickets are then read in one query each.
_BATCH = 200
_LISTERS = 8
# Rows never checked against OSS (from before verified_at existed) are drained this many a run.
_UNVERIFIED_PER_RUN = 10_000

Issued = UploadTicket.Status.ISSUED


@dataclass
class SweepResult:
    ran: bool = True  # False: another sweep held the lock
    since: datetime | None = None  # None: the first sweep, which looked at everyone
    users: int = 0
    objects_listed: int = 0
    confirmed: int = 0  # tickets accepted from their stored object
    refused: int = 0  # tickets or rows refused (and their objects removed)
    expired: int = 0  # tickets expired with nothing stored
    adopted: int = 0
    deleted: int = 0  # objects deleted: strays, refused tickets' keys, deleted rows' objects
    verified: int = 0
    repaired: int = 0
    missing: int = 0
    restored: int = 0
    left_for_later: int = 0  # too recent: their callback may still come

    def repairs(self) -> dict[str, int]:
        """The changes made, by kind (the metrics' appserver_sweep_repairs_total)."""
        kinds = ("confirmed", "refused", "expired", "adopted", "deleted", "repaired")
        return {kind: getattr(self, kind) for kind in (*kinds, "missing", "restored")}

    def summary(self) -> str:
        if not self.ran:
            return "Another sweep is running; nothing done."
        fields = [f for f in self.__dataclass_fields__ if f not in ("ran", "since")]
        return ", ".join(f"{getattr(self, f)} {f.replace('_', ' ')}" for f in fields)


@contextmanager
def _exclusive() -> Iterator[bool]:
    """Whether this process holds the sweep's lock (always, off PostgreSQL: `make run` runs
    one process)."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_KEY])
        held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])


def uploads_sweep(*, now: datetime | None = None) -> SweepResult:
    """One sweep (see the module's docstring); moves the mark when it finishes."""
    with _exclusive() as held:
        if not held:
            return SweepResult(ran=False)
        clock = time.monotonic()
        started = now or timezone.now()
        try:
            mark = SweepMark.objects.filter(name=MARK).first()
            since = mark.swept_from - _CLOCK_SKEW if mark else None
            result = _Sweep(since=since, now=started).run()
            SweepMark.objects.update_or_create(
                name=MARK, defaults={"swept_from": started, "finished_at": timezone.now()}
            )
        except Exception:
            metrics.sweep_record(seconds=time.monotonic() - clock, outcome="failed", repairs={})
            raise
        metrics.sweep_record(
            seconds=time.monotonic() - clock, outcome="ok", repairs=result.repairs()
        )
    logger.info("Upload sweep: %s", result.summary())
    return result


def sweep_users(*, since: datetime | None) -> list[User]:
    """Everyone whose prefix can have changed since `since` (everyone who ever could: None)."""
    grants = CredentialGrant.objects.filter(scope__in=WRITE_SCOPES, user__isnull=False)
    refusals = CallbackRefusal.objects.filter(object_removed=False, owner__isnull=False)
    if since is not None:
        # created_at bounds the scan to recent grants (its index); expiration decides.
        grants = grants.filter(created_at__gte=since - _LONGEST_CREDENTIALS, expiration__gte=since)
        refusals = refusals.filter(created_at__gte=since)
    ids = set(grants.values_list("user_id", flat=True).distinct())
    ids |= set(UploadTicket.objects.filter(status=Issued).values_list("owner_id", flat=True))
    ids |= set(refusals.values_list("owner_id", flat=True).distinct())
    return list(User.objects.filter(pk__in=ids).order_by("pk"))


class _Sweep:
    def __init__(self, *, since: datetime | None, now: datetime) -> None:
        self.since = since
        self.now = now
        self.recent = now - timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
        self.bucket = settings.OSS_BUCKET
        self.result = SweepResult(since=since)
        self.settled: set = set()  # tickets decided in this run
        self.checked: set[int] = set()  # rows compared with their object in this run

    def run(self) -> SweepResult:
        users = sweep_users(since=self.since)
        with ThreadPoolExecutor(max_workers=_LISTERS) as listers:
            for start in range(0, len(users), _BATCH):
                self.batch(users[start : start + _BATCH], listers)
        self.overdue_tickets()
        self.unverified_rows()
        return self.result

    # -- users' prefixes, a batch at a time

    def listing(self, prefix: str) -> dict[str, oss.ListedObject]:
        objects: dict[str, oss.ListedObject] = {}
        marker = ""
        while True:
            page = oss.oss_list_page(
                prefix=prefix, marker=marker, max_keys=settings.RECONCILE_PAGE_SIZE
            )
            objects.update((o.key, o) for o in page.objects)
            if not page.truncated:
                return objects
            marker = page.next_marker

    def batch(self, users: list[User], listers: ThreadPoolExecutor) -> None:
        # The listings run side by side (each a round trip to OSS); the database is read once
        # per batch, and after them: whatever a callback commits meanwhile shows up in what is
        # read after it, so a fresh upload is never taken for a stray.
        prefixes = [user_storage_prefix(user=user) for user in users]
        listings = list(listers.map(self.listing, prefixes))
        ids = [user.pk for user in users]
        issued: dict[str, UploadTicket] = {
            t.key: t for t in UploadTicket.objects.filter(owner_id__in=ids, status=Issued)
        }
        rows: dict[int, dict[str, Upload]] = {pk: {} for pk in ids}
        for row in Upload.objects.filter(owner_id__in=ids).only(
            "id", "owner_id", "bucket", "key", "status", "size", "etag", "verified_at"
        ):
            if row.bucket == self.bucket:
                rows[row.owner_id][row.key] = row
        for user, prefix, objects in zip(users, prefixes, listings, strict=True):
            mine = {k: r for k, r in rows[user.pk].items() if k.startswith(prefix)}
            self.user(user, objects, issued, mine)

    def user(
        self,
        user: User,
        objects: dict[str, oss.ListedObject],
        issued: dict[str, UploadTicket],
        rows: dict[str, Upload],
    ) -> None:
        self.result.users += 1
        self.result.objects_listed += len(objects)
        strays: list[oss.ListedObject] = []
        for key, obj in objects.items():
            row = rows.pop(key, None)
            if row is not None:
                self.row_with_object(row, obj)
            elif obj.last_modified > self.recent:
                self.result.left_for_later += 1
            elif key in issued:
                self.settle(issued[key], public_id=user.public_id)
            else:
                strays.append(obj)
        if strays:
            named = {
                t.key: t
                for t in UploadTicket.objects.filter(
                    bucket=self.bucket, key__in=[o.key for o in strays]
                )
            }
            for obj in strays:
                self.stray(user, obj, named.get(obj.key))
        for row in rows.values():
            if row.status == Upload.Status.ACTIVE:
                self.without_object(row.pk, row.key)

    def row_with_object(self, row: Upload, obj: oss.ListedObject) -> None:
        self.checked.add(row.pk)
        if row.status == Upload.Status.ACTIVE:
            if row.verified_at is None or (row.size, row.etag) != (obj.size, obj.etag):
                self.verify(row.pk, row.key)
        elif row.status == Upload.Status.MISSING:
            if upload_set_missing(upload_id=row.pk, missing=False):
                self.result.restored += 1
                self.verify(row.pk, row.key)
        elif obj.last_modified <= self.recent:
            self.delete(row.key)  # its owner deleted the upload; the object outlived it

    def verify(self, upload_id: int, key: str) -> None:
        info = oss.oss_head_object(key=key, timeout=oss.RECONCILE_TIMEOUT_SECONDS)
        if info is None:
            self.without_object(upload_id, key)
            return
        outcome = repairs.upload_verify(upload_id=upload_id, info=info)
        if outcome == repairs.VERIFIED:
            self.result.verified += 1
        elif outcome == repairs.REPAIRED:
            self.result.repaired += 1
        elif outcome == repairs.REFUSED:
            self.result.refused += 1

    def without_object(self, upload_id: int, key: str) -> None:
        self.checked.add(upload_id)
        # Rows are read after the listing, so an upload recorded in between is not missing.
        if oss.oss_head_object(key=key, timeout=oss.RECONCILE_TIMEOUT_SECONDS) is not None:
            return
        if upload_set_missing(upload_id=upload_id, missing=True):
            self.result.missing += 1

    def settle(self, ticket: UploadTicket, *, public_id: str) -> bool:
        """Decide an issued ticket from its object, as a confirmation would (False: nothing
        stored there)."""
        self.settled.add(ticket.pk)
        info = oss.oss_head_object(key=ticket.key, timeout=oss.RECONCILE_TIMEOUT_SECONDS)
        try:
            answer = ticket_settle(ticket=ticket, owner_public_id=public_id, real=info)
        except ObjectMissing:
            return False
        if answer.accepted:
            self.result.confirmed += 1
        else:
            self.result.refused += 1
        return True

    def stray(self, user: User, obj: oss.ListedObject, ticket: UploadTicket | None) -> None:
        if ticket is not None and ticket.status == UploadTicket.Status.REFUSED:
            self.delete(obj.key)  # the refused ticket's own key: the verdict stands
            return
        if settings.RECONCILE_STRAY_OBJECTS == "delete":
            self.delete(obj.key)
            return
        info = oss.oss_head_object(key=obj.key, timeout=oss.RECONCILE_TIMEOUT_SECONDS)
        if info is None:
            return
        try:
            adopted = upload_adopt(
                owner=user, key=obj.key, info=info, stored_at=obj.last_modified, by="sweep"
            )
        except IntegrityError:
            return  # recorded meanwhile (a late callback or confirmation): not a stray
        if adopted is None:
            self.delete(obj.key)  # beyond the quota, or a type no ticket allows
        else:
            self.result.adopted += 1

    def delete(self, key: str) -> None:
        if oss.oss_delete_object(key=key, timeout=oss.RECONCILE_TIMEOUT_SECONDS).removed:
            self.result.deleted += 1

    # -- what no user's listing covered

    def overdue_tickets(self) -> None:
        overdue = (
            UploadTicket.objects.filter(status=Issued, expires_at__lte=self.now)
            .select_related("owner")
            .order_by("expires_at")
        )
        for ticket in overdue.iterator(chunk_size=500):
            if ticket.pk in self.settled:
                continue  # decided above, or raced by a callback: its owner's pass saw it
            stored = self.settle(ticket, public_id=ticket.owner.public_id)
            if not stored and ticket_expire(ticket_id=ticket.pk, cutoff=self.now):
                self.result.expired += 1

    def unverified_rows(self) -> None:
        unverified = (
            Upload.objects.filter(verified_at__isnull=True, status=Upload.Status.ACTIVE)
            .order_by("id")
            .values_list("id", "key")[:_UNVERIFIED_PER_RUN]
        )
        for upload_id, key in unverified:
            if upload_id not in self.checked:
                self.verify(upload_id, key)
