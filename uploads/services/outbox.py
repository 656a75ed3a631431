"""The uploads app's events (events/, the transactional outbox): what each carries.

Every function here runs inside the transaction of the change it reports. The fast path
(accept_at_once) writes upload.accepted in its own SQL with the same fields as `upload_facts`.
"""

from __future__ import annotations

from typing import Any

from events.models import EventType
from events.services import event_record
from uploads.models import CallbackRefusal, Upload


def upload_facts(upload: Upload) -> dict[str, Any]:
    return {
        "upload_id": upload.pk,
        "key": upload.key,
        "bucket": upload.bucket,
        "filename": upload.filename,
        "size": upload.size,
        "content_type": upload.content_type,
        "etag": upload.etag,
        "metadata": upload.metadata,
        "image_width": upload.image_width,
        "image_height": upload.image_height,
    }


def upload_event(*, type: EventType, upload: Upload, owner_public_id: str, **extra: Any) -> None:
    event_record(type=type, user_public_id=owner_public_id, data={**upload_facts(upload), **extra})


def refusal_event(*, refusal: CallbackRefusal, owner_public_id: str, alone: bool = False) -> None:
    """upload.refused, and quota.exceeded when that was the reason."""
    data = {
        "key": refusal.key,
        "bucket": refusal.bucket,
        "size": refusal.size,
        "content_type": refusal.content_type,
        "reason": refusal.reason,
        "message": refusal.message,
        "ticket_id": str(refusal.ticket_id) if refusal.ticket_id else None,
    }
    event_record(
        type=EventType.UPLOAD_REFUSED, user_public_id=owner_public_id, data=data, alone=alone
    )
    if refusal.reason == CallbackRefusal.Reason.QUOTA_EXCEEDED:
        event_record(
            type=EventType.QUOTA_EXCEEDED,
            user_public_id=owner_public_id,
            data={"at": "callback", "key": refusal.key, "size": refusal.size},
            alone=alone,
        )
