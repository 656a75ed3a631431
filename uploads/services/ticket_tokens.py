"""The x:ticket callback variable: a ticket id bound by a MAC to its owner, bucket, key and mode."""

from __future__ import annotations

import base64
import uuid

from django.conf import settings
from django.utils.crypto import salted_hmac

from uploads.models import UploadTicket

Mode = UploadTicket.Mode


def _hmac_secret() -> str:
    return settings.UPLOAD_CALLBACK_HMAC_KEY or settings.SECRET_KEY


def ticket_token(*, ticket: UploadTicket, owner_public_id: str) -> str:
    """The x:ticket callback variable: the ticket id and a MAC binding it to owner and key (and,
    for url and form tickets, to the mode, which tells the callback it needs no HeadObject)."""
    return ticket_token_from(
        ticket_id=ticket.id,
        owner_public_id=owner_public_id,
        bucket=ticket.bucket,
        key=ticket.key,
        mode=ticket.mode,
    )


def ticket_token_from(
    *, ticket_id: uuid.UUID, owner_public_id: str, bucket: str, key: str, mode: str = Mode.STS
) -> str:
    message = f"{ticket_id.hex}\n{owner_public_id}\n{bucket}\n{key}"
    if mode != Mode.STS:
        message += f"\n{mode}"
    mac = salted_hmac("uploads.ticket", message, secret=_hmac_secret(), algorithm="sha256")
    tag = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
    return f"{ticket_id.hex}.{tag}" if mode == Mode.STS else f"{ticket_id.hex}.{mode}.{tag}"


def token_claims(token: str) -> tuple[uuid.UUID, str] | None:
    """The ticket id and mode a token names (unverified: only its MAC, checked against the
    ticket row, says they are true)."""
    parts = token.split(".")
    if len(parts) == 2:
        ticket_hex, mode, mac = parts[0], Mode.STS, parts[1]
    elif len(parts) == 3 and parts[1] in (Mode.URL, Mode.FORM):
        ticket_hex, mode, mac = parts
    else:
        return None
    if not mac:
        return None
    try:
        return uuid.UUID(hex=ticket_hex), Mode(mode)
    except ValueError:
        return None
