"""Repairs of upload rows and their quota, for the sweep and reconciliation: adopting an object
no callback recorded, marking rows missing or back, and making a row agree with its object.

`upload_verify` compares a row with OSS's HeadObject and decides as a callback would have: the
same object -> verified; a different object the ticket still allows -> the row and the usage
follow it; one the ticket (or the quota, or the type rules) would have refused -> the row is
deleted, its usage released, the refusal recorded and the row's own key removed (its ticket
bound it, or the sweep adopted it there).

Each repair is its own transaction and re-checks the state the caller saw; locks as everywhere in
uploads.services: the owner's StorageUsage row first, then the row.
"""

from __future__ import annotations

import posixpath
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from events.models import EventType
from uploads import oss
from uploads.content_types import content_type_allowed
from uploads.models import CallbackRefusal, Upload, UploadTicket
from uploads.selectors import usage_limits
from uploads.services.callback_facts import base_type
from uploads.services.outbox import refusal_event, upload_event
from uploads.services.quota import usage_locked
from uploads.services.rules import Verdict, object_refusal

Reason = CallbackRefusal.Reason

VERIFIED, REPAIRED, REFUSED, SKIPPED = "verified", "repaired", "refused", "skipped"


def upload_adopt(
    *, owner: User, key: str, info: oss.ObjectInfo, stored_at: datetime, by: str = "reconciliation"
) -> Upload | None:
    """Record an object that is in the owner's prefix but has no row (its callback never came).

    None, and nothing written, when it may not be kept: a type no ticket could allow, larger
    than any upload may be, or beyond the owner's quota (pending reservations included). The
    caller deletes it then."""
    if info.size > settings.UPLOAD_MAX_SIZE or not content_type_allowed(info.content_type):
        return None
    with transaction.atomic():
        usage = usage_locked(user_id=owner.pk)
        max_bytes, max_objects = usage_limits(usage=usage)
        if (
            usage.bytes_used + usage.bytes_reserved + info.size > max_bytes
            or usage.objects_used + usage.objects_reserved + 1 > max_objects
        ):
            return None
        upload = Upload.objects.create(
            owner=owner,
            bucket=settings.OSS_BUCKET,
            key=key,
            filename=posixpath.basename(key)[:255],
            size=info.size,
            etag=info.etag,
            crc64=info.crc64,
            content_type=base_type(info.content_type) or "application/octet-stream",
            metadata={"adopted_by": by},
            oss_request_id=info.request_id[:64],
            verified_at=timezone.now(),
        )
        # The upload happened when OSS stored it, not when we noticed it.
        Upload.objects.filter(pk=upload.pk).update(created_at=stored_at)
        upload.created_at = stored_at
        usage.bytes_used += info.size
        usage.objects_used += 1
        usage.save(update_fields=["bytes_used", "objects_used", "updated_at"])
        upload_event(
            type=EventType.UPLOAD_ADOPTED, upload=upload, owner_public_id=owner.public_id, by=by
        )
    return upload


def upload_set_missing(*, upload_id: int, missing: bool) -> bool:
    """Mark an active upload missing (usage released) or a missing one active again (counted).

    Returns False when the row is no longer in the state the caller saw (someone else acted)."""
    owner_id = Upload.objects.filter(pk=upload_id).values_list("owner_id", flat=True).first()
    if owner_id is None:
        return False
    before, after = (
        (Upload.Status.ACTIVE, Upload.Status.MISSING)
        if missing
        else (Upload.Status.MISSING, Upload.Status.ACTIVE)
    )
    with transaction.atomic():
        usage = usage_locked(user_id=owner_id)
        upload = Upload.objects.select_for_update().filter(pk=upload_id, status=before).first()
        if upload is None:
            return False
        sign = -1 if missing else 1
        usage.bytes_used = max(0, usage.bytes_used + sign * upload.size)
        usage.objects_used = max(0, usage.objects_used + sign)
        usage.save(update_fields=["bytes_used", "objects_used", "updated_at"])
        Upload.objects.filter(pk=upload.pk).update(status=after, updated_at=timezone.now())
    return True


def upload_verify(*, upload_id: int, info: oss.ObjectInfo, now: datetime | None = None) -> str:
    """Make an active row agree with `info` (OSS's HeadObject of its key). Returns what was
    done: VERIFIED, REPAIRED, REFUSED (row deleted, object removed if possible) or SKIPPED
    (the row changed meanwhile)."""
    now = now or timezone.now()
    owner_id = Upload.objects.filter(pk=upload_id).values_list("owner_id", flat=True).first()
    if owner_id is None:
        return SKIPPED
    refusal = None
    with transaction.atomic():
        usage = usage_locked(user_id=owner_id)
        upload = (
            Upload.objects.select_for_update(of=("self",))
            .select_related("ticket")
            .filter(pk=upload_id, status=Upload.Status.ACTIVE)
            .first()
        )
        if upload is None:
            return SKIPPED
        real_type = base_type(info.content_type)
        if (upload.size, upload.etag, upload.content_type) == (info.size, info.etag, real_type):
            Upload.objects.filter(pk=upload.pk).update(verified_at=now)
            return VERIFIED
        verdict = object_refusal(
            size=info.size, content_type=info.content_type, ticket=upload.ticket
        )
        max_bytes, _ = usage_limits(usage=usage)
        used = usage.bytes_used - upload.size + info.size
        if verdict is None and used + usage.bytes_reserved > max_bytes:
            verdict = Verdict(Reason.QUOTA_EXCEEDED, "The upload exceeds the storage quota.")
        if verdict is None:
            usage.bytes_used = max(0, used)
            usage.save(update_fields=["bytes_used", "updated_at"])
            Upload.objects.filter(pk=upload.pk).update(
                size=info.size,
                etag=info.etag[:64],
                crc64=info.crc64[:20],
                content_type=real_type[:255],
                verified_at=now,
                updated_at=now,
            )
            return REPAIRED
        usage.bytes_used = max(0, usage.bytes_used - upload.size)
        usage.objects_used = max(0, usage.objects_used - 1)
        usage.save(update_fields=["bytes_used", "objects_used", "updated_at"])
        Upload.objects.filter(pk=upload.pk).update(
            status=Upload.Status.DELETED, deleted_at=now, updated_at=now, verified_at=now
        )
        if upload.ticket_id is not None:
            UploadTicket.objects.filter(pk=upload.ticket_id).update(
                status=UploadTicket.Status.REFUSED
            )
        refusal = CallbackRefusal.objects.create(
            reason=verdict.reason,
            message=verdict.message,
            owner_id=owner_id,
            ticket_id=upload.ticket_id,
            bucket=upload.bucket,
            key=upload.key,
            size=info.size,
            content_type=real_type[:255],
            oss_request_id=info.request_id[:64],
        )
        owner_public_id = User.objects.filter(pk=owner_id).values_list("public_id", flat=True)
        refusal_event(refusal=refusal, owner_public_id=owner_public_id.first() or "")
    # After commit, as for a refused callback: a failed delete leaves a deleted row whose
    # object remains, which the next sweep deletes again.
    if oss.oss_delete_object(key=refusal.key, timeout=oss.RECONCILE_TIMEOUT_SECONDS).removed:
        CallbackRefusal.objects.filter(pk=refusal.pk).update(object_removed=True)
    return REFUSED
