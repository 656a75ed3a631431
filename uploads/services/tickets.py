"""Upload tickets: issue (limits, reservation, callback headers) and expiry."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.selectors import user_storage_prefix
from appserver.errors import AccountSuspended, InvalidInput
from events.models import EventType
from events.services import event_record
from uploads.content_types import content_type_allowed, content_type_extension
from uploads.models import UploadTicket
from uploads.services.quota import (
    QuotaExceeded,
    reservation_release,
    tickets_expire_locked,
    usage_locked,
)
from uploads.services.reservation import TicketRow, ticket_reserve
from uploads.services.ticket_tokens import ticket_token

Mode = UploadTicket.Mode


CALLBACK_BODY_TYPE = "application/x-www-form-urlencoded"
# Form-encoded, not JSON: OSS URL-encodes every substituted value in form bodies, so the body
# parses the same whatever a value contains (JSON substitution differs between OSS and tools).
CALLBACK_BODY = (
    "bucket=${bucket}&object=${object}&etag=${etag}&size=${size}&mimeType=${mimeType}"
    "&height=${imageInfo.height}&width=${imageInfo.width}&format=${imageInfo.format}"
    "&crc64=${crc64}&reqId=${reqId}&operation=${operation}&ticket=${x:ticket}"
)


def _object_key(*, prefix: str, ticket_id: uuid.UUID, content_type: str) -> str:
    # The server picks the key: the user's prefix, a date folder for humans browsing the bucket,
    # the ticket id for uniqueness, and the extension of the checked content type (never the
    # file name's: "x.html" declared as image/png must not be served as .html).
    ext = content_type_extension(content_type)
    return f"{prefix}{timezone.now():%Y/%m/%d}/{ticket_id.hex}{ext}"


def tickets_expire(*, now: datetime | None = None) -> int:
    """Expire every overdue unused ticket and release its reservation (cron: expire_tickets)."""
    now = now or timezone.now()
    owners = (
        UploadTicket.objects.filter(status=UploadTicket.Status.ISSUED, expires_at__lte=now)
        .values_list("owner_id", flat=True)
        .distinct()
    )
    expired = 0
    for owner_id in list(owners):
        with transaction.atomic():
            usage = usage_locked(user_id=owner_id)
            count = tickets_expire_locked(usage=usage, now=now)
            if count:
                usage.save(update_fields=["bytes_reserved", "objects_reserved", "updated_at"])
            expired += count
    return expired


@dataclass(frozen=True)
class IssuedTicket:
    ticket: UploadTicket
    token: str
    headers: dict[str, str]
    callback: dict[str, Any]


def ticket_issue(
    *,
    user: User,
    filename: str,
    size: int,
    content_type: str,
    metadata: dict[str, str] | None = None,
    mode: str = Mode.STS,
    not_after: datetime | None = None,
    now: datetime | None = None,
) -> IssuedTicket:
    """Check the limits, reserve quota and return the ticket with its callback headers.

    `not_after` shortens the ticket's life (url and form tickets: the signing credentials'
    expiry, after which OSS refuses the upload anyway)."""
    if user.is_suspended:
        raise AccountSuspended()
    max_size = settings.UPLOAD_MAX_SIZE
    if size > max_size:
        raise InvalidInput(
            f"The file is larger than the {max_size} bytes allowed.",
            code="file_too_large",
            fields={"size": [f"At most {max_size} bytes."]},
        )
    if not content_type_allowed(content_type):
        raise InvalidInput(
            f"Files of type {content_type} are not accepted.",
            code="content_type_not_allowed",
            fields={
                "content_type": [f"Allowed: {', '.join(settings.UPLOAD_ALLOWED_CONTENT_TYPES)}."]
            },
        )
    now = now or timezone.now()
    expires_at = now + timedelta(seconds=settings.UPLOAD_TICKET_TTL_SECONDS)
    if not_after is not None:
        expires_at = min(expires_at, not_after)
    ticket_id = uuid.uuid4()
    prefix = user_storage_prefix(user=user)
    try:
        ticket = ticket_reserve(
            row=TicketRow(
                id=ticket_id,
                owner_id=user.pk,
                key=_object_key(prefix=prefix, ticket_id=ticket_id, content_type=content_type),
                filename=filename,
                size=size,
                content_type=content_type,
                metadata=metadata or {},
                mode=mode,
                now=now,
                expires_at=expires_at,
            )
        )
    except QuotaExceeded as exc:
        # The reservation rolled back; the refusal is the whole change (no other row).
        event_record(
            type=EventType.QUOTA_EXCEEDED,
            user_public_id=user.public_id,
            data={"at": "ticket", "size": size, "content_type": content_type, "reason": str(exc)},
            alone=True,
        )
        raise
    token = ticket_token(ticket=ticket, owner_public_id=user.public_id)
    callback = {
        "callbackUrl": settings.OSS_CALLBACK_URL,
        "callbackBody": CALLBACK_BODY,
        "callbackBodyType": CALLBACK_BODY_TYPE,
    }
    variables = {"x:ticket": token}
    headers = {
        "x-oss-callback": base64.b64encode(json.dumps(callback).encode()).decode(),
        "x-oss-callback-var": base64.b64encode(json.dumps(variables).encode()).decode(),
        # OSS refuses to replace an existing key with it (409 FileAlreadyExists), and the
        # session policies refuse any upload without it: an accepted object stays what it was.
        "x-oss-forbid-overwrite": "true",
    }
    return IssuedTicket(
        ticket=ticket, token=token, headers=headers, callback={**callback, "callbackVar": variables}
    )


def ticket_expire(*, ticket_id, cutoff: datetime) -> bool:
    """Expire one overdue ticket and release its reservation (False if it changed meanwhile)."""
    owner_id = UploadTicket.objects.filter(pk=ticket_id).values_list("owner_id", flat=True).first()
    if owner_id is None:
        return False
    with transaction.atomic():
        usage = usage_locked(user_id=owner_id)
        ticket = (
            # SKIP LOCKED as in tickets_expire_locked: a callback in flight holds the ticket and
            # then waits for the usage row this transaction holds; waiting here would deadlock.
            UploadTicket.objects.select_for_update(skip_locked=True)
            .filter(pk=ticket_id, status=UploadTicket.Status.ISSUED, expires_at__lte=cutoff)
            .first()
        )
        if ticket is None:
            return False
        reservation_release(usage, ticket)
        usage.save(update_fields=["bytes_reserved", "objects_reserved", "updated_at"])
        UploadTicket.objects.filter(pk=ticket.pk).update(
            status=UploadTicket.Status.EXPIRED, reserved_bytes=0
        )
    return True
