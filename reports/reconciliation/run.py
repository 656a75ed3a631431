"""The run itself: list the bucket and read the store side by side, user by user, record each
finding, and repair it with the upload services when applying."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from accounts.selectors import user_storage_prefix
from appserver.errors import AppError
from reports.models import ReconciliationFinding, ReconciliationRun
from reports.reconciliation.scope import (
    _COUNTER,
    _REPAIRED,
    ReconcileProgress,
    managed_root,
    reconcile_prefix_validate,
)
from uploads import oss
from uploads.models import StorageUsage, Upload, UploadTicket
from uploads.services import repairs, ticket_expire, upload_adopt, upload_set_missing

logger = logging.getLogger(__name__)

Kind = ReconciliationFinding.Kind
Action = ReconciliationFinding.Action
Progress = Callable[["ReconcileProgress"], None]


class _Reconciler:
    def __init__(self, *, prefix: str, apply: bool, progress: Progress | None) -> None:
        self.root = managed_root()
        self.prefix = prefix
        self.apply = apply
        self.policy = settings.RECONCILE_STRAY_OBJECTS
        self.page_size = settings.RECONCILE_PAGE_SIZE
        self.bucket = settings.OSS_BUCKET
        self.now = timezone.now()
        self.cutoff = self.now - timedelta(seconds=settings.RECONCILE_GRACE_SECONDS)
        self.state = ReconcileProgress()
        self.report = progress or (lambda state: None)
        self.pending: list[ReconciliationFinding] = []
        self.etags: dict[str, str] = {}  # of the rows loaded (rows_of), by key
        self.run = ReconciliationRun.objects.create(
            bucket=self.bucket, prefix=prefix, applied=apply, stray_policy=self.policy
        )

    # -- bookkeeping

    def find(
        self,
        kind: str,
        action: str,
        key: str,
        *,
        owner: User | None = None,
        size: int | None = None,
        upload_id: int | None = None,
        ticket_id=None,
        detail: str = "",
    ) -> None:
        self.pending.append(
            ReconciliationFinding(
                run=self.run,
                kind=kind,
                action=action,
                key=key,
                owner=owner,
                size=size,
                upload_id=upload_id,
                ticket_id=ticket_id,
                detail=detail[:500],
            )
        )
        counter = _COUNTER[kind]
        setattr(self.run, counter, getattr(self.run, counter) + 1)
        if action in _REPAIRED:
            self.run.repaired += 1
        if action == Action.FAILED:
            self.run.errors += 1
        self.state.findings += 1

    def flush(self) -> None:
        if self.pending:
            ReconciliationFinding.objects.bulk_create(self.pending, batch_size=1000)
            self.pending = []
        self.run.objects_listed = self.state.objects_listed
        self.run.rows_checked = self.state.rows_checked
        self.run.save()
        self.report(self.state)

    # -- listing

    def pages(self, prefix: str, delimiter: str = "") -> Iterator[oss.ObjectPage]:
        marker = ""
        while True:
            page = oss.oss_list_page(
                prefix=prefix, marker=marker, delimiter=delimiter, max_keys=self.page_size
            )
            yield page
            if not page.truncated:
                return
            marker = page.next_marker

    def in_scope(self, unit_prefix: str) -> bool:
        return unit_prefix.startswith(self.prefix) or self.prefix.startswith(unit_prefix)

    def segment(self, key: str) -> str | None:
        """The user id part of a managed key, or None for a key in no user's folder."""
        head, slash, _rest = key[len(self.root) :].partition("/")
        return head if slash and head else None

    # -- findings and repairs

    def unowned(self, obj: oss.ListedObject) -> None:
        if obj.last_modified > self.cutoff:
            self.state.skipped_recent += 1
            return
        # Deleting requires a non-empty root: with a template that starts with the user id the
        # whole bucket would count as "managed", and foreign keys must never be deleted.
        deletable = self.policy == "delete" and bool(self.root)
        if not deletable:
            self.find(Kind.UNOWNED_OBJECT, Action.REPORTED, obj.key, size=obj.size)
        elif not self.apply:
            self.find(Kind.UNOWNED_OBJECT, Action.WOULD_DELETE, obj.key, size=obj.size)
        else:
            self.delete(Kind.UNOWNED_OBJECT, obj.key, size=obj.size)

    def delete(self, kind: str, key: str, **extra) -> None:
        result = oss.oss_delete_object(key=key, timeout=oss.RECONCILE_TIMEOUT_SECONDS)
        if result.removed:
            self.find(kind, Action.DELETED, key, **extra)
        else:
            self.find(kind, Action.FAILED, key, detail=f"delete failed: {result.error}", **extra)

    def stray(self, user: User, obj: oss.ListedObject) -> None:
        if self.policy == "delete":
            if not self.apply:
                self.find(
                    Kind.STRAY_OBJECT, Action.WOULD_DELETE, obj.key, owner=user, size=obj.size
                )
            else:
                self.delete(Kind.STRAY_OBJECT, obj.key, owner=user, size=obj.size)
            return
        if not self.apply:
            self.find(Kind.STRAY_OBJECT, Action.WOULD_ADOPT, obj.key, owner=user, size=obj.size)
            return
        try:
            info = oss.oss_head_object(key=obj.key, timeout=oss.RECONCILE_TIMEOUT_SECONDS)
            if info is None:
                self.find(
                    Kind.STRAY_OBJECT, Action.SKIPPED, obj.key, owner=user, detail="gone since"
                )
                return
            upload = upload_adopt(owner=user, key=obj.key, info=info, stored_at=obj.last_modified)
            if upload is None:  # beyond the quota, or a type no ticket allows: not kept
                self.delete(Kind.STRAY_OBJECT, obj.key, owner=user, size=obj.size)
                return
        except (AppError, IntegrityError) as exc:
            self.find(
                Kind.STRAY_OBJECT,
                Action.FAILED,
                obj.key,
                owner=user,
                size=obj.size,
                detail=f"{type(exc).__name__}: {exc}",
            )
            return
        self.find(
            Kind.STRAY_OBJECT,
            Action.ADOPTED,
            obj.key,
            owner=user,
            size=info.size,
            upload_id=upload.pk,
        )

    def missing(self, user: User, row: tuple[int, str, str, int]) -> None:
        upload_id, key, _status, size = row
        extra = {"owner": user, "size": size, "upload_id": upload_id}
        # Rows are read before their part of the listing, so a key uploaded or deleted in
        # between looks missing: a HEAD tells (read-only, so the dry run does it too).
        try:
            present = oss.oss_head_object(key=key, timeout=oss.RECONCILE_TIMEOUT_SECONDS)
        except AppError as exc:
            self.find(Kind.MISSING_OBJECT, Action.FAILED, key, detail=str(exc), **extra)
            return
        if present is not None:
            self.find(Kind.MISSING_OBJECT, Action.SKIPPED, key, detail="present now", **extra)
            return
        if not self.apply:
            self.find(Kind.MISSING_OBJECT, Action.WOULD_MARK_MISSING, key, **extra)
            return
        done = upload_set_missing(upload_id=upload_id, missing=True)
        self.find(
            Kind.MISSING_OBJECT,
            Action.MARKED_MISSING if done else Action.SKIPPED,
            key,
            detail="" if done else "row changed since",
            **extra,
        )

    def reappeared(self, user: User, row: tuple[int, str, str, int]) -> None:
        upload_id, key, _status, size = row
        extra = {"owner": user, "size": size, "upload_id": upload_id}
        if not self.apply:
            self.find(Kind.REAPPEARED_OBJECT, Action.WOULD_RESTORE, key, **extra)
            return
        done = upload_set_missing(upload_id=upload_id, missing=False)
        self.find(Kind.REAPPEARED_OBJECT, Action.RESTORED if done else Action.SKIPPED, key, **extra)

    def changed(self, user: User, row: tuple[int, str, str, int]) -> None:
        upload_id, key, _status, size = row
        extra = {"owner": user, "size": size, "upload_id": upload_id}
        if not self.apply:
            self.find(Kind.CHANGED_OBJECT, Action.WOULD_REPAIR, key, **extra)
            return
        try:
            info = oss.oss_head_object(key=key, timeout=oss.RECONCILE_TIMEOUT_SECONDS)
        except AppError as exc:
            self.find(Kind.CHANGED_OBJECT, Action.FAILED, key, detail=str(exc), **extra)
            return
        outcome = repairs.upload_verify(upload_id=upload_id, info=info) if info else "gone"
        action = {repairs.REPAIRED: Action.REPAIRED, repairs.REFUSED: Action.REFUSED}.get(
            outcome, Action.SKIPPED
        )
        detail = "" if action != Action.SKIPPED else f"{outcome} since it was listed"
        self.find(Kind.CHANGED_OBJECT, action, key, detail=detail, **extra)

    def deleted_still_stored(self, user: User, row: tuple[int, str, str, int]) -> None:
        upload_id, key, _status, size = row
        extra = {"owner": user, "size": size, "upload_id": upload_id}
        if not self.apply:
            self.find(Kind.DELETED_STILL_STORED, Action.WOULD_DELETE, key, **extra)
        else:
            self.delete(Kind.DELETED_STILL_STORED, key, **extra)

    # -- phases

    def tickets(self) -> None:
        overdue = (
            UploadTicket.objects.filter(
                bucket=self.bucket,
                status=UploadTicket.Status.ISSUED,
                expires_at__lte=self.cutoff,
                key__startswith=self.prefix,
            )
            .select_related("owner")
            .order_by("expires_at")
        )
        for ticket in overdue.iterator(chunk_size=1000):
            extra = {"owner": ticket.owner, "size": ticket.reserved_bytes, "ticket_id": ticket.pk}
            if not self.apply:
                self.find(Kind.EXPIRED_TICKET, Action.WOULD_EXPIRE, ticket.key, **extra)
                continue
            done = ticket_expire(ticket_id=ticket.pk, cutoff=self.cutoff)
            self.find(
                Kind.EXPIRED_TICKET, Action.EXPIRED if done else Action.SKIPPED, ticket.key, **extra
            )
        self.flush()

    def rows_of(self, user: User | None) -> dict[str, tuple[int, str, str, int]]:
        rows: dict[str, tuple[int, str, str, int]] = {}
        self.etags = {}  # one user's at a time, like their rows
        if user is None:
            return rows
        # By owner only (their index), the bucket checked here: a planner misled about the
        # bucket column's selectivity would otherwise walk the whole (bucket, key) index.
        for row in Upload.objects.filter(owner=user).values_list(
            "id", "key", "status", "size", "bucket", "etag"
        ):
            if row[4] == self.bucket and row[1].startswith(self.prefix):
                rows[row[1]] = row[:4]
                self.etags[row[1]] = row[5]
        self.state.rows_checked += len(rows)
        return rows

    def finish(self, user: User | None, rows: dict[str, tuple[int, str, str, int]]) -> None:
        """The user's listing is over: active rows not matched by an object are missing."""
        for row in rows.values():
            if row[2] == Upload.Status.ACTIVE:
                self.missing(user, row)  # type: ignore[arg-type]
        if user is not None:
            self.state.units_done += 1

    def walk(self) -> None:
        """One flat listing of the scope, in key order. A user's keys are contiguous in it (they
        share the user's prefix), so each user's rows are loaded when their first key shows up
        and settled when their last one has passed: one request per 1000 keys, however many
        users, and only one user's rows in memory at a time."""
        users: dict[str, User | None] = {}
        seen: set[str] = set()
        current: str | None = None
        user: User | None = None
        user_prefix = ""
        rows: dict[str, tuple[int, str, str, int]] = {}
        for page in self.pages(self.prefix):
            self.state.objects_listed += len(page.objects)
            fresh = {self.segment(o.key) for o in page.objects} - users.keys() - {None}
            if fresh:
                found = {u.public_id: u for u in User.objects.filter(public_id__in=fresh)}
                users.update({seg: found.get(seg) for seg in fresh})
            strays: list[tuple[User, oss.ListedObject]] = []
            for obj in page.objects:
                seg = self.segment(obj.key)
                if seg != current:
                    self.finish(user, rows)
                    current, user = seg, users.get(seg) if seg else None
                    user_prefix = user_storage_prefix(user=user) if user is not None else ""
                    rows = self.rows_of(user)
                    if seg:
                        seen.add(seg)
                found_row = rows.pop(obj.key, None)
                if found_row is not None:
                    if found_row[2] == Upload.Status.ACTIVE:
                        if (found_row[3], self.etags.get(obj.key)) != (obj.size, obj.etag):
                            self.changed(user, found_row)  # type: ignore[arg-type]
                    elif found_row[2] == Upload.Status.MISSING:
                        self.reappeared(user, found_row)  # type: ignore[arg-type]
                    elif found_row[2] == Upload.Status.DELETED:
                        self.deleted_still_stored(user, found_row)  # type: ignore[arg-type]
                elif user is None or not obj.key.startswith(user_prefix):
                    self.unowned(obj)
                elif obj.last_modified > self.cutoff:
                    self.state.skipped_recent += 1
                else:
                    strays.append((user, obj))
            if strays:
                waiting = set(
                    UploadTicket.objects.filter(
                        bucket=self.bucket,
                        status=UploadTicket.Status.ISSUED,
                        expires_at__gt=self.cutoff,
                        key__in=[o.key for _, o in strays],
                    ).values_list("key", flat=True)
                )
                for owner, obj in strays:
                    if obj.key in waiting:
                        self.state.skipped_recent += 1  # its callback may still come
                    else:
                        self.stray(owner, obj)
            if len(self.pending) >= 500 or self.state.objects_listed % 10_000 < len(page.objects):
                self.flush()
            else:
                self.report(self.state)
        self.finish(user, rows)
        # Users with active rows and not a single object in the bucket.
        with_rows = (
            Upload.objects.filter(bucket=self.bucket, status=Upload.Status.ACTIVE)
            .values_list("owner__public_id", flat=True)
            .distinct()
        )
        for public_id in sorted(set(with_rows) - seen):
            if self.in_scope(f"{self.root}{public_id}/"):
                owner = User.objects.filter(public_id=public_id).first()
                self.finish(owner, self.rows_of(owner))
                if len(self.pending) >= 500:
                    self.flush()

    def expected_objects(self) -> int:
        """For the progress bar: what the store expects to find (active rows in scope)."""
        if self.prefix == self.root:
            total = StorageUsage.objects.aggregate(n=Sum("objects_used"))["n"]
            return int(total or 0)
        return Upload.objects.filter(
            bucket=self.bucket, status=Upload.Status.ACTIVE, key__startswith=self.prefix
        ).count()

    def execute(self) -> ReconciliationRun:
        try:
            self.tickets()
            self.state.units_total = self.expected_objects()
            self.flush()
            self.walk()
            self.run.status = ReconciliationRun.Status.FINISHED
        except KeyboardInterrupt:
            self.run.status = ReconciliationRun.Status.INTERRUPTED
            raise
        except AppError as exc:
            self.run.status = ReconciliationRun.Status.FAILED
            self.run.error_message = str(exc)[:500]
            raise
        finally:
            self.run.finished_at = timezone.now()
            self.run.skipped_recent = self.state.skipped_recent
            self.flush()
        return self.run


def reconciliation_run(
    *, prefix: str | None = None, apply: bool = False, progress: Progress | None = None
) -> ReconciliationRun:
    """Compare the bucket under `prefix` (default: the managed root) with the store.

    Dry run unless `apply`. Always records a ReconciliationRun with its findings."""
    scope = reconcile_prefix_validate(prefix=prefix)
    return _Reconciler(prefix=scope, apply=apply, progress=progress).execute()
