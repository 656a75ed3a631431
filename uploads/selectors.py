"""Reads of the uploads app. Every read of user data is filtered by owner here."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db.models import QuerySet

from accounts.models import User
from uploads import oss
from uploads.content_types import content_type_allowed  # noqa: F401 (the rule lives there)
from uploads.models import StorageUsage, Upload, UploadTicket


def usage_limits(*, usage: StorageUsage) -> tuple[int, int]:
    """(max bytes, max objects): the user's overrides, else the settings."""
    max_bytes = usage.max_bytes if usage.max_bytes is not None else settings.UPLOAD_QUOTA_BYTES
    max_objects = (
        usage.max_objects if usage.max_objects is not None else settings.UPLOAD_QUOTA_OBJECTS
    )
    return max_bytes, max_objects


def upload_list(
    *,
    user: User,
    content_type: str = "",
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Upload]:
    """The user's visible uploads (not deleted); ordering is left to the paginator."""
    uploads = Upload.objects.filter(owner=user).exclude(status=Upload.Status.DELETED)
    if content_type:
        if content_type.endswith("/*"):
            uploads = uploads.filter(content_type__startswith=content_type[:-1])
        else:
            uploads = uploads.filter(content_type=content_type)
    if created_after is not None:
        uploads = uploads.filter(created_at__gte=created_after)
    if created_before is not None:
        uploads = uploads.filter(created_at__lt=created_before)
    return uploads


def upload_get(*, user: User, upload_id: int) -> Upload | None:
    return (
        Upload.objects.filter(owner=user, pk=upload_id)
        .exclude(status=Upload.Status.DELETED)
        .first()
    )


def usage_get(*, user: User) -> StorageUsage:
    """The user's usage (unsaved defaults if nothing was ever reserved)."""
    return StorageUsage.objects.filter(user=user).first() or StorageUsage(user=user)


def upload_has_variants(*, upload: Upload) -> bool:
    """Whether OSS IMG can derive images from the upload: a stored image it decodes."""
    return upload.status == Upload.Status.ACTIVE and (
        upload.content_type in oss.IMG_SOURCE_TYPES or bool(upload.image_format)
    )


def upload_variants(*, uploads: list[Upload]) -> dict[int, oss.ProcessUrls | None]:
    """Signed URLs of each configured IMAGE_VARIANTS per upload id (None for non-images).

    The uploads come from the owner-filtered selectors above: whoever may read an upload's row
    gets its variants, exactly as for download_url. No query is made."""
    result: dict[int, oss.ProcessUrls | None] = {upload.pk: None for upload in uploads}
    if not settings.IMAGE_VARIANTS:
        return result
    images = [upload for upload in uploads if upload_has_variants(upload=upload)]
    signed = oss.oss_sign_process_urls(
        keys=[upload.key for upload in images], processes=settings.IMAGE_VARIANTS
    )
    for upload in images:
        result[upload.pk] = signed[upload.key]
    return result


def ticket_get(*, user: User, ticket_id: uuid.UUID) -> UploadTicket | None:
    return UploadTicket.objects.filter(owner=user, pk=ticket_id).first()
