"""Repairs of upload rows against what OSS really stores (the sweep's and reconcile's writes).

A row's size, ETag and type may come from a callback body only (verified_at empty), or the
object may have changed under it. `upload_verify` compares the row with OSS's HeadObject and
makes them agree as a callback would have decided: same object -> verified; a different object
the ticket still allows -> the row and the usage follow it; one the ticket (or the quota, or the
type rules) would have refused -> the row is deleted, its usage released, the refusal recorded
and the object removed (the row's own key: the ticket bound it, or the sweep adopted it there).

Locks as in uploads/services.py: the owner's StorageUsage row first, then the upload row.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from uploads import oss
from uploads.content_types import content_type_allowed
from uploads.models import CallbackRefusal, Upload, UploadTicket
from uploads.selectors import usage_limits
from uploads.services import _usage_locked

Reason = CallbackRefusal.Reason

VERIFIED, REPAIRED, REFUSED, SKIPPED = "verified", "repaired", "refused", "skipped"


def _base(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def _breaks(upload: Upload, info: oss.ObjectInfo) -> tuple[str, str] | None:
    """Why a callback would have refused `info` for this row's ticket, or None (quota aside)."""
    real_type = _base(info.content_type)
    if info.size > settings.UPLOAD_MAX_SIZE:
        return Reason.TOO_LARGE, f"The object is larger than {settings.UPLOAD_MAX_SIZE} bytes."
    ticket: UploadTicket | None = upload.ticket
    if ticket is not None:
        if info.size > ticket.declared_size:
            return (
                Reason.SIZE_MISMATCH,
                f"The object has {info.size} bytes; the ticket allowed {ticket.declared_size}.",
            )
        if real_type != _base(ticket.content_type):
            return (
                Reason.TYPE_MISMATCH,
                f"The object is {real_type or 'untyped'}; the ticket declared "
                f"{ticket.content_type}.",
            )
    if not content_type_allowed(real_type):
        return Reason.TYPE_NOT_ALLOWED, f"Files of type {real_type} are not accepted."
    return None


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
        usage = _usage_locked(user_id=owner_id)
        upload = (
            Upload.objects.select_for_update(of=("self",))
            .select_related("ticket")
            .filter(pk=upload_id, status=Upload.Status.ACTIVE)
            .first()
        )
        if upload is None:
            return SKIPPED
        real_type = _base(info.content_type)
        if (upload.size, upload.etag, upload.content_type) == (info.size, info.etag, real_type):
            Upload.objects.filter(pk=upload.pk).update(verified_at=now)
            return VERIFIED
        verdict = _breaks(upload, info)
        max_bytes, _ = usage_limits(usage=usage)
        used = usage.bytes_used - upload.size + info.size
        if verdict is None and used + usage.bytes_reserved > max_bytes:
            verdict = (Reason.QUOTA_EXCEEDED, "The upload exceeds the storage quota.")
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
            reason=verdict[0],
            message=verdict[1],
            owner_id=owner_id,
            ticket_id=upload.ticket_id,
            bucket=upload.bucket,
            key=upload.key,
            size=info.size,
            content_type=real_type[:255],
            oss_request_id=info.request_id[:64],
        )
    # After commit, as for a refused callback: a failed delete leaves a deleted row whose
    # object remains, which the next sweep deletes again.
    if oss.oss_delete_object(key=refusal.key, timeout=oss.RECONCILE_TIMEOUT_SECONDS).removed:
        CallbackRefusal.objects.filter(pk=refusal.pk).update(object_removed=True)
    return REFUSED
