"""The owner's StorageUsage row: locking it and giving reservations back."""

from __future__ import annotations

from datetime import datetime

from appserver.errors import AppError
from uploads.models import StorageUsage, UploadTicket


class QuotaExceeded(AppError):
    status, code, message = 403, "quota_exceeded", "This upload would exceed your storage quota."


def usage_locked(*, user_id: int) -> StorageUsage:
    """The owner's usage row, locked until the transaction ends (created on first use)."""
    usage = StorageUsage.objects.select_for_update().filter(user_id=user_id).first()
    if usage is None:
        StorageUsage.objects.bulk_create([StorageUsage(user_id=user_id)], ignore_conflicts=True)
        usage = StorageUsage.objects.select_for_update().get(user_id=user_id)
    return usage


def reservation_release(usage: StorageUsage, ticket: UploadTicket) -> None:
    """Give a ticket's reservation back (caller holds both locks and saves both)."""
    if ticket.status == UploadTicket.Status.ISSUED:
        usage.bytes_reserved = max(0, usage.bytes_reserved - ticket.reserved_bytes)
        usage.objects_reserved = max(0, usage.objects_reserved - 1)
        ticket.reserved_bytes = 0


def tickets_expire_locked(*, usage: StorageUsage, now: datetime) -> int:
    overdue = list(
        # SKIP LOCKED: a ticket locked by a callback in flight is that callback's to settle
        # (and waiting for it here, while holding the usage row, could deadlock).
        UploadTicket.objects.select_for_update(skip_locked=True).filter(
            owner_id=usage.user_id, status=UploadTicket.Status.ISSUED, expires_at__lte=now
        )
    )
    for ticket in overdue:
        reservation_release(usage, ticket)
        ticket.status = UploadTicket.Status.EXPIRED
    if overdue:
        UploadTicket.objects.bulk_update(overdue, ["status", "reserved_bytes"])
    return len(overdue)
