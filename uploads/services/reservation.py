"""A ticket's reservation: the quota check, the lazy expiry and the ticket row, all or nothing.

Two ways to the same result. PostgreSQL runs it as one statement (`_reserve_at_once`):
one round trip where the locked path needs six or seven (BEGIN, lock the usage row, lock the
overdue tickets, expire them if there are any, update the usage row, insert the ticket, COMMIT),
which was half of a ticket request's CPU. Other databases (the embedded default's SQLite) take
the locked path. tests/uploads/test_reservation_rules.py runs every case through both and
requires the same verdict and the same rows.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

from uploads.models import UploadTicket
from uploads.selectors import usage_limits
from uploads.services.quota import QuotaExceeded, tickets_expire_locked, usage_locked


@dataclass(frozen=True)
class TicketRow:
    """What a ticket row is written with (the key is the server's, never the client's)."""

    id: uuid.UUID
    owner_id: int
    key: str
    filename: str
    size: int
    content_type: str
    metadata: dict[str, str]
    mode: str
    now: datetime
    expires_at: datetime


def ticket_reserve(*, row: TicketRow) -> UploadTicket:
    """Reserve the quota and write the ticket (QuotaExceeded: nothing written)."""
    if connection.vendor == "postgresql":
        return _reserve_at_once(row=row)
    return _reserve_locked(row=row)


def _quota_check(
    *, size: int, used: tuple[int, int], reserved: tuple[int, int], limits: tuple[int, int]
) -> None:
    """QuotaExceeded unless one more object of `size` fits: the rule of both paths."""
    (bytes_used, objects_used), (bytes_reserved, objects_reserved) = used, reserved
    max_bytes, max_objects = limits
    if bytes_used + bytes_reserved + size > max_bytes:
        left = max(0, max_bytes - bytes_used - bytes_reserved)
        raise QuotaExceeded(
            f"This upload needs {size} bytes; {left} are left (pending uploads count "
            "until they finish or their tickets expire)."
        )
    if objects_used + objects_reserved + 1 > max_objects:
        raise QuotaExceeded(f"You already have the {max_objects} files allowed.")


def _ticket(row: TicketRow) -> UploadTicket:
    return UploadTicket(
        id=row.id,
        owner_id=row.owner_id,
        bucket=settings.OSS_BUCKET,
        key=row.key,
        filename=row.filename,
        declared_size=row.size,
        content_type=row.content_type,
        metadata=row.metadata,
        reserved_bytes=row.size,
        mode=row.mode,
        created_at=row.now,
        expires_at=row.expires_at,
    )


def _reserve_locked(*, row: TicketRow) -> UploadTicket:
    with transaction.atomic():
        usage = usage_locked(user_id=row.owner_id)
        # Lazily, so quotas recover even where no cron runs expire_tickets.
        tickets_expire_locked(usage=usage, now=row.now)
        _quota_check(
            size=row.size,
            used=(usage.bytes_used, usage.objects_used),
            reserved=(usage.bytes_reserved, usage.objects_reserved),
            limits=usage_limits(usage=usage),
        )
        usage.bytes_reserved += row.size
        usage.objects_reserved += 1
        usage.save(update_fields=["bytes_reserved", "objects_reserved", "updated_at"])
        ticket = _ticket(row)
        ticket.save(force_insert=True)
    return ticket


# - `usage_row` locks the owner's usage row first: whoever reserves or settles for this user
#   waits here, and nothing waits for a ticket while holding it (uploads/services/__init__.py).
# - `overdue` locks the owner's expired-but-issued tickets, skipping any a callback holds (that
#   callback settles it); its EXISTS makes it run only once the usage row is held.
# - `after_expiry` is the usage with their reservations given back (the arithmetic of
#   quota.reservation_release, summed).
# - `usage` reserves the ticket's size and one object only if they fit (the rule of
#   `_quota_check`); `expired` and `ticket` write only if `usage` did. Refused: nothing written.
# - The last SELECT answers with the figures the refusal message needs.
# Column lists match uploads/models.py.
RESERVE_AT_ONCE_SQL = """
WITH usage_row AS MATERIALIZED (
    SELECT user_id, bytes_used, objects_used, bytes_reserved, objects_reserved,
        COALESCE(max_bytes, %(max_bytes)s::bigint) AS max_bytes,
        COALESCE(max_objects, %(max_objects)s::integer) AS max_objects
    FROM uploads_storageusage
    WHERE user_id = %(owner_id)s::bigint
    FOR UPDATE
), overdue AS MATERIALIZED (
    SELECT id, reserved_bytes
    FROM uploads_uploadticket
    WHERE owner_id = %(owner_id)s::bigint AND status = %(issued)s::varchar
      AND expires_at <= %(now)s::timestamptz AND EXISTS (SELECT FROM usage_row)
    FOR UPDATE SKIP LOCKED
), after_expiry AS MATERIALIZED (
    SELECT u.user_id, u.bytes_used, u.objects_used, u.max_bytes, u.max_objects,
        GREATEST(u.bytes_reserved - COALESCE((SELECT sum(reserved_bytes) FROM overdue), 0), 0)
            AS bytes_reserved,
        GREATEST(u.objects_reserved - (SELECT count(*) FROM overdue), 0) AS objects_reserved
    FROM usage_row u
), usage AS (
    UPDATE uploads_storageusage s
    SET bytes_reserved = a.bytes_reserved + %(size)s::bigint,
        objects_reserved = a.objects_reserved + 1,
        updated_at = %(now)s::timestamptz
    FROM after_expiry a
    WHERE s.user_id = a.user_id
      AND a.bytes_used + a.bytes_reserved + %(size)s::bigint <= a.max_bytes
      AND a.objects_used + a.objects_reserved + 1 <= a.max_objects
    RETURNING s.user_id
), expired AS (
    UPDATE uploads_uploadticket t
    SET status = %(expired)s::varchar, reserved_bytes = 0
    FROM overdue o
    WHERE t.id = o.id AND EXISTS (SELECT FROM usage)
), ticket AS (
    INSERT INTO uploads_uploadticket (
        id, owner_id, bucket, key, filename, declared_size, content_type, metadata, mode,
        reserved_bytes, status, created_at, expires_at
    )
    SELECT %(id)s::uuid, user_id, %(bucket)s::varchar, %(key)s::varchar,
        %(filename)s::varchar, %(size)s::bigint, %(content_type)s::varchar,
        %(metadata)s::jsonb, %(mode)s::varchar, %(size)s::bigint, %(issued)s::varchar,
        %(now)s::timestamptz, %(expires_at)s::timestamptz
    FROM usage
    RETURNING id
)
SELECT EXISTS (SELECT FROM ticket), bytes_used, objects_used, bytes_reserved, objects_reserved,
    max_bytes, max_objects
FROM after_expiry
"""


def _reserve_at_once(*, row: TicketRow) -> UploadTicket:
    params = {
        "id": row.id,
        "owner_id": row.owner_id,
        "bucket": settings.OSS_BUCKET,
        "key": row.key,
        "filename": row.filename,
        "size": row.size,
        "content_type": row.content_type,
        "metadata": json.dumps(row.metadata),
        "mode": row.mode,
        "now": row.now,
        "expires_at": row.expires_at,
        "issued": UploadTicket.Status.ISSUED.value,
        "expired": UploadTicket.Status.EXPIRED.value,
        "max_bytes": settings.UPLOAD_QUOTA_BYTES,
        "max_objects": settings.UPLOAD_QUOTA_OBJECTS,
    }
    # Bound and prepared on the server (appserver/db): planning this statement costs more than
    # running it.
    open_cursor = getattr(connection, "server_binding_cursor", connection.cursor)
    with open_cursor() as cursor:
        cursor.execute(RESERVE_AT_ONCE_SQL, params)
        result = cursor.fetchone()
        if result is None:  # the user's first reservation: no usage row yet
            cursor.execute(
                "INSERT INTO uploads_storageusage (user_id, bytes_used, objects_used, "
                "bytes_reserved, objects_reserved, updated_at) "
                "VALUES (%s, 0, 0, 0, 0, %s) ON CONFLICT (user_id) DO NOTHING",
                [row.owner_id, row.now],
            )
            cursor.execute(RESERVE_AT_ONCE_SQL, params)
            result = cursor.fetchone()
    written, *figures = result
    if not written:
        bytes_used, objects_used, bytes_reserved, objects_reserved, max_bytes, max_objects = figures
        _quota_check(
            size=row.size,
            used=(bytes_used, objects_used),
            reserved=(bytes_reserved, objects_reserved),
            limits=(max_bytes, max_objects),
        )
        raise RuntimeError("The reservation wrote nothing, yet the quota allows it.")
    ticket = _ticket(row)
    ticket._state.adding = False  # as if saved by the ORM
    return ticket
