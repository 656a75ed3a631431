"""Deleting a user's uploads (the object in OSS first, then the row and its quota)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from appserver.errors import AppError, NotFound
from events.models import EventType
from uploads import oss
from uploads.models import Upload
from uploads.services.outbox import upload_event
from uploads.services.quota import usage_locked


def upload_delete(*, user: User, upload_id: int) -> None:
    """Delete the object in OSS, then mark the row deleted and give its quota back.

    Idempotent: deleting an upload already deleted is a no-op (the API answers 204 again)."""
    upload = Upload.objects.filter(owner=user, pk=upload_id).first()
    if upload is None:
        raise NotFound("No such upload.")
    if upload.status == Upload.Status.DELETED:
        return
    result = oss.oss_delete_object(key=upload.key)
    if not result.removed:
        raise oss.StorageUnavailable("The object could not be deleted from storage. Retry later.")
    with transaction.atomic():
        usage = usage_locked(user_id=user.pk)
        locked = Upload.objects.select_for_update().get(pk=upload.pk)
        if locked.status == Upload.Status.DELETED:
            return
        if locked.status == Upload.Status.ACTIVE:
            usage.bytes_used = max(0, usage.bytes_used - locked.size)
            usage.objects_used = max(0, usage.objects_used - 1)
            usage.save(update_fields=["bytes_used", "objects_used", "updated_at"])
        Upload.objects.filter(pk=locked.pk).update(
            status=Upload.Status.DELETED, deleted_at=timezone.now(), updated_at=timezone.now()
        )
        upload_event(type=EventType.UPLOAD_DELETED, upload=locked, owner_public_id=user.public_id)


def uploads_delete_by_admin(*, upload_ids: list[int]) -> tuple[int, int]:
    """Admin action: delete objects and rows; returns (deleted, failed)."""
    deleted = failed = 0
    for upload in Upload.objects.filter(pk__in=upload_ids).select_related("owner"):
        try:
            upload_delete(user=upload.owner, upload_id=upload.pk)
            deleted += 1
        except AppError:
            failed += 1
    return deleted, failed
