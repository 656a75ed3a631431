"""Why an upload is refused: the rules a callback, a confirmation, the sweep's repairs and the
fast path's SQL (accept_at_once.py) all apply. Quota is checked where the usage row is locked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from uploads import oss
from uploads.content_types import content_type_allowed
from uploads.models import CallbackRefusal, UploadTicket
from uploads.services.callback_facts import CallbackFacts, base_type

Reason = CallbackRefusal.Reason


@dataclass(frozen=True)
class Verdict:
    reason: str
    message: str


def object_refusal(*, size: int, content_type: str, ticket: UploadTicket | None) -> Verdict | None:
    """Why an object of this size and type may not be kept under `ticket` (None: it may).
    Without a ticket (an adopted object) only the limits every upload has apply."""
    real_type = base_type(content_type)
    if size > settings.UPLOAD_MAX_SIZE:
        return Verdict(
            Reason.TOO_LARGE, f"The object is larger than {settings.UPLOAD_MAX_SIZE} bytes."
        )
    if ticket is not None:
        if size > ticket.declared_size:
            return Verdict(
                Reason.SIZE_MISMATCH,
                f"The object has {size} bytes; the ticket allowed {ticket.declared_size}.",
            )
        if real_type != base_type(ticket.content_type):
            return Verdict(
                Reason.TYPE_MISMATCH,
                f"The object is {real_type or 'untyped'}; the ticket declared "
                f"{ticket.content_type}.",
            )
    if not content_type_allowed(real_type):
        return Verdict(Reason.TYPE_NOT_ALLOWED, f"Files of type {real_type} are not accepted.")
    return None


def callback_refusal(
    *, ticket: UploadTicket, facts: CallbackFacts, real: oss.ObjectInfo | None, now: datetime
) -> Verdict | None:
    """Why a genuine, issued ticket's callback must be refused, or None. `ticket` carries its
    owner's is_suspended (decision.py's locked read)."""
    if ticket.status == UploadTicket.Status.EXPIRED or ticket.expires_at <= now:
        return Verdict(Reason.TICKET_EXPIRED, "The upload ticket expired before the upload ended.")
    if ticket.owner_is_suspended:
        return Verdict(Reason.OWNER_SUSPENDED, "The account is suspended.")
    size = real.size if real is not None else facts.size
    if size is None:
        return Verdict(Reason.SIZE_MISMATCH, "The callback does not state the object's size.")
    content_type = real.content_type if real is not None else facts.mime_type
    return object_refusal(size=size, content_type=content_type, ticket=ticket)
