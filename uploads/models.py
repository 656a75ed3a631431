"""The metadata store: what each user uploaded, the tickets that allowed it, and what was refused.

Quota counters live beside the user (`StorageUsage`) so they can be locked row-by-row
(SELECT ... FOR UPDATE) when tickets and callbacks race.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class UploadTicket(models.Model):
    """Permission for one upload: the exact key, the declared size and type, and a deadline."""

    class Status(models.TextChoices):
        ISSUED = "issued", "Issued"
        USED = "used", "Used"
        EXPIRED = "expired", "Expired unused"
        REFUSED = "refused", "Refused at callback"

    class Mode(models.TextChoices):
        # How the app uploads, and so how far a callback's facts can be trusted:
        # sts  - with the user's STS credentials and the callback headers it chose (the
        #        callback names a size the app could have written: checked with HeadObject);
        # url  - a presigned PUT URL whose signature covers the callback headers;
        # form - a PostObject policy that fixes the key, size range, type and callback.
        # For url and form, OSS renders ${size}, ${mimeType} and ${etag} into a template the app
        # could not edit.
        STS = "sts", "STS credentials"
        URL = "url", "Presigned PUT URL"
        FORM = "form", "PostObject form"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: uploadticket_owner_status_idx starts with owner, and each extra
    # index is one more write per ticket issued and per callback.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="upload_tickets",
        db_index=False,
    )
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1023)
    filename = models.CharField(max_length=255)
    declared_size = models.BigIntegerField()
    content_type = models.CharField(max_length=255)
    metadata = models.JSONField(default=dict, blank=True)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.STS)
    # Bytes held against the owner's quota until the callback commits them or the ticket expires.
    reserved_bytes = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ISSUED)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bucket", "key"], name="uploadticket_bucket_key_uniq"),
        ]
        indexes = [
            # Expiry sweeps look only at issued tickets.
            models.Index(
                fields=["expires_at"],
                name="uploadticket_issued_exp_idx",
                condition=Q(status="issued"),
            ),
            models.Index(fields=["owner", "status"], name="uploadticket_owner_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


class Upload(models.Model):
    """One object stored in OSS, recorded from a verified callback (or adopted by reconcile)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        MISSING = "missing", "Missing from the bucket"
        DELETED = "deleted", "Deleted"

    # No index of its own: upload_owner_created_idx starts with owner, and each extra index is
    # one more write per accepted callback.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads", db_index=False
    )
    ticket = models.OneToOneField(
        UploadTicket, null=True, blank=True, on_delete=models.SET_NULL, related_name="upload"
    )
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1023)
    filename = models.CharField(max_length=255, blank=True)
    size = models.BigIntegerField()
    etag = models.CharField(max_length=64, blank=True)
    crc64 = models.CharField(max_length=20, blank=True)
    content_type = models.CharField(max_length=255)
    image_width = models.PositiveIntegerField(null=True, blank=True)
    image_height = models.PositiveIntegerField(null=True, blank=True)
    image_format = models.CharField(max_length=16, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    oss_request_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # When size, ETag and type were last read from OSS itself (HeadObject). Null: they come
    # from a callback body only; the sweep checks such rows against the object within minutes.
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bucket", "key"], name="upload_bucket_key_uniq"),
        ]
        indexes = [
            # The user's own list: newest first, keyset (cursor) pagination.
            models.Index(fields=["owner", "-created_at", "-id"], name="upload_owner_created_idx"),
            models.Index(fields=["content_type", "created_at"], name="upload_type_created_idx"),
            # Reports (reports/selectors/): activity over a date range read from the index
            # alone (index-only scans, a fifth of the heap's size at 1M rows).
            models.Index(
                fields=["created_at"],
                include=["owner", "size", "status", "content_type"],
                name="upload_created_cover_idx",
            ),
            # The sweep's work list: active rows not yet checked against their object (empty
            # while every callback makes a HeadObject, so it costs accepted callbacks nothing).
            models.Index(
                fields=["id"],
                name="upload_unverified_idx",
                condition=Q(verified_at__isnull=True, status="active"),
            ),
        ]

    def __str__(self) -> str:
        return self.key


class CallbackRefusal(models.Model):
    """A callback verified to come from OSS but refused, and why. The object is removed only
    when it is the refused ticket's own key (object_removed says whether it went)."""

    class Reason(models.TextChoices):
        NO_TICKET = "no_ticket", "No ticket names this key"
        TICKET_MISMATCH = "ticket_mismatch", "Ticket binding does not match"
        TICKET_EXPIRED = "ticket_expired", "Ticket expired"
        TICKET_USED = "ticket_used", "Ticket already used"
        WRONG_BUCKET = "wrong_bucket", "Unexpected bucket"
        SIZE_MISMATCH = "size_mismatch", "Size differs from the declared size"
        TOO_LARGE = "too_large", "Larger than allowed"
        TYPE_NOT_ALLOWED = "type_not_allowed", "Content type not allowed"
        TYPE_MISMATCH = "type_mismatch", "Content type differs from the declared type"
        OWNER_SUSPENDED = "owner_suspended", "Owner is suspended"
        QUOTA_EXCEEDED = "quota_exceeded", "Quota exceeded"
        OBJECT_MISSING = "object_missing", "No such object in the bucket"

    created_at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    message = models.CharField(max_length=500)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="callback_refusals",
    )
    ticket = models.ForeignKey(
        UploadTicket, null=True, blank=True, on_delete=models.SET_NULL, related_name="refusals"
    )
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1023)
    size = models.BigIntegerField(null=True, blank=True)
    content_type = models.CharField(max_length=255, blank=True)
    oss_request_id = models.CharField(max_length=64, blank=True)
    object_removed = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="refusal_created_idx")]

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}"


class StorageUsage(models.Model):
    """A user's quota and what counts against it. Overrides left empty use the settings."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="storage_usage",
    )
    max_bytes = models.BigIntegerField(
        null=True, blank=True, help_text="Override of UPLOAD_QUOTA_BYTES for this user."
    )
    max_objects = models.IntegerField(
        null=True, blank=True, help_text="Override of UPLOAD_QUOTA_OBJECTS for this user."
    )
    bytes_used = models.BigIntegerField(default=0)
    objects_used = models.IntegerField(default=0)
    bytes_reserved = models.BigIntegerField(default=0)
    objects_reserved = models.IntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "storage usage"
        constraints = [
            models.CheckConstraint(
                condition=Q(bytes_used__gte=0)
                & Q(objects_used__gte=0)
                & Q(bytes_reserved__gte=0)
                & Q(objects_reserved__gte=0),
                name="storageusage_nonnegative",
            ),
        ]

    def __str__(self) -> str:
        return f"usage of {self.user_id}"


class SweepMark(models.Model):
    """Where `manage.py sweep_uploads` got to: it looks only at what can have changed since.

    One row per sweep kind; `swept_from` is the start of the last sweep that finished (what
    happened after it is the next sweep's to see)."""

    name = models.CharField(max_length=32, primary_key=True)
    swept_from = models.DateTimeField()
    finished_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} swept from {self.swept_from:%Y-%m-%d %H:%M:%S}"
