"""Confirm instead of re-upload: decide a ticket from what OSS stores under its key.

OSS calls back once, waits 5 s, never retries, and keeps the object whatever happens: an app
that got 203 CallbackFailed (or lost the answer) has stored bytes nobody recorded. It asks the
server to look instead of sending them again. The server makes one HeadObject of the ticket's
key and then applies `services.callback_decide`, the very rules a callback gets, so a
confirmation, a replay and the real callback racing it all end with the same row. The sweep
(uploads/sweep.py) settles tickets the same way.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.utils import timezone

from accounts.models import User
from appserver.errors import Conflict, NotFound
from uploads import oss
from uploads.models import UploadTicket
from uploads.selectors import ticket_get
from uploads.services import CallbackAnswer, CallbackFacts, callback_decide, ticket_token


class ObjectMissing(Conflict):
    code = "object_missing"
    message = "Nothing is stored under this ticket's key yet: upload the file first."


def ticket_confirm(*, user: User, ticket_id: uuid.UUID) -> CallbackAnswer:
    """The owner's confirmation of one of their tickets (NotFound for anyone else's)."""
    ticket = ticket_get(user=user, ticket_id=ticket_id)
    if ticket is None:
        raise NotFound("No such upload ticket.")
    real = oss.oss_head_object(key=ticket.key)  # outside any transaction, like a callback's
    return ticket_settle(ticket=ticket, owner_public_id=user.public_id, real=real)


def ticket_settle(
    *,
    ticket: UploadTicket,
    owner_public_id: str,
    real: oss.ObjectInfo | None,
    now: datetime | None = None,
) -> CallbackAnswer:
    """Decide `ticket` from `real`, OSS's HeadObject of its key, with the callback's rules.

    A ticket with nothing stored that is still open (issued, or expired unused) raises
    ObjectMissing and nothing changes. The deadline is judged at the time OSS stored the
    object (its Last-Modified), as a callback that arrived at once would have."""
    open_states = (UploadTicket.Status.ISSUED, UploadTicket.Status.EXPIRED)
    if real is None and ticket.status in open_states:
        raise ObjectMissing()
    now = now or timezone.now()
    if real is not None and real.last_modified is not None:
        now = min(now, real.last_modified)
    facts = CallbackFacts(
        bucket=ticket.bucket,
        key=ticket.key,
        etag=real.etag if real else "",
        size=real.size if real else None,
        mime_type=real.content_type if real else "",
        width=None,
        height=None,
        image_format="",
        crc64=real.crc64 if real else "",
        request_id=(real.request_id if real else "")[:64],
        operation="Confirm",
        token=ticket_token(ticket=ticket, owner_public_id=owner_public_id),
    )
    return callback_decide(facts=facts, real=real, bucket=ticket.bucket, now=now)
