"""The fast path: an upload everything allows, accepted in one PostgreSQL statement."""

from __future__ import annotations

import hmac
import json
import uuid
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection

from uploads import oss
from uploads.content_types import content_type_allowed
from uploads.models import Upload, UploadTicket
from uploads.services.callback_facts import CallbackFacts, base_type, object_fields, public_id_in
from uploads.services.ticket_tokens import ticket_token_from

Mode = UploadTicket.Mode


# A callback that everything allows, accepted in one autocommit statement: one round trip
# where the locked path needs five (health check, BEGIN, lock, write, COMMIT).
# - `locked` locks the ticket by primary key alone (with the other conditions beside the id, the
#   planner may pick the partial index of issued tickets, i.e. every upload in flight).
# - `t` keeps it only if it is still issued, unexpired, its owner not suspended and the object
#   within what it declared, judged on the newest row version (a row locked FOR UPDATE is
#   re-read once another callback releases it).
# - `usage` commits the bytes only if they fit the quota (the arithmetic of `usage_commit`);
#   `ticket` is marked used only if `usage` returned a row; the upload is inserted only if
#   `ticket` was. Any condition unmet: no row, nothing written.
# - `event` writes the upload.accepted event (events/, the outbox) from the inserted row, so it
#   commits with the upload in the same statement; its data is uploads.services.outbox's.
# Column lists match uploads/models.py and events/models.py.
ACCEPT_AT_ONCE_SQL = """
WITH locked AS MATERIALIZED (
    SELECT id, owner_id, bucket, key, mode, status, expires_at, declared_size, content_type,
        reserved_bytes
    FROM uploads_uploadticket
    WHERE id = %(ticket_id)s
    FOR UPDATE
), t AS (
    SELECT t.id, t.reserved_bytes, t.owner_id
    FROM locked t JOIN accounts_user u ON u.id = t.owner_id
    WHERE t.bucket = %(bucket)s AND t.key = %(key)s AND t.mode = %(mode)s
      AND u.public_id = %(public_id)s AND NOT u.is_suspended
      AND t.status = %(issued)s AND t.expires_at > %(now)s AND t.declared_size >= %(size)s
      AND lower(btrim(split_part(t.content_type, ';', 1))) = %(content_type)s
), usage AS (
    UPDATE uploads_storageusage s
    SET bytes_used = s.bytes_used + %(size)s,
        objects_used = s.objects_used + 1,
        bytes_reserved = GREATEST(s.bytes_reserved - t.reserved_bytes, 0),
        objects_reserved = GREATEST(s.objects_reserved - 1, 0),
        updated_at = %(now)s
    FROM t
    WHERE s.user_id = t.owner_id
      AND s.bytes_used + GREATEST(s.bytes_reserved - t.reserved_bytes, 0) + %(size)s
          <= COALESCE(s.max_bytes, %(max_bytes)s)
      AND s.objects_used + GREATEST(s.objects_reserved - 1, 0) + 1
          <= COALESCE(s.max_objects, %(max_objects)s)
    RETURNING s.user_id
), ticket AS (
    UPDATE uploads_uploadticket
    SET status = %(used)s, used_at = %(now)s, reserved_bytes = 0
    WHERE id = (SELECT id FROM t) AND EXISTS (SELECT FROM usage)
    RETURNING id, owner_id, filename, metadata
), upload AS (
    INSERT INTO uploads_upload (
        owner_id, ticket_id, bucket, key, filename, size, etag, crc64, content_type,
        image_width, image_height, image_format, metadata, oss_request_id, status, created_at,
        updated_at, verified_at
    )
    SELECT owner_id, id, %(bucket)s, %(key)s, filename, %(size)s, %(etag)s, %(crc64)s,
        %(content_type)s, %(image_width)s, %(image_height)s, %(image_format)s, metadata,
        %(oss_request_id)s, %(active)s, %(now)s, %(now)s, %(verified_at)s
    FROM ticket
    RETURNING id, owner_id, filename, metadata
), event AS (
    INSERT INTO events_event (uid, type, occurred_at, user_public_id, data, dispatched)
    SELECT %(event_uid)s, 'upload.accepted', %(now)s, %(public_id)s,
        jsonb_build_object(
            'upload_id', id, 'key', %(key)s, 'bucket', %(bucket)s, 'filename', filename,
            'size', %(size)s, 'content_type', %(content_type)s, 'etag', %(etag)s,
            'metadata', metadata, 'image_width', %(image_width)s::integer,
            'image_height', %(image_height)s::integer
        ),
        false
    FROM upload
)
SELECT id, owner_id, filename, metadata FROM upload
"""


def accept_at_once(
    *,
    ticket_id: uuid.UUID,
    mode: str,
    facts: CallbackFacts,
    real: oss.ObjectInfo | None,
    bucket: str,
    now: datetime,
) -> Upload | None:
    """The recorded upload if this callback is accepted at once (PostgreSQL); None when the
    ticket-locked path (`callback_decide_locked`) must decide. Accepts only what that path
    would accept too: the rules of rules.py that need no row are checked here, the others in
    the SQL."""
    if connection.vendor != "postgresql":
        return None
    if settings.UPLOAD_CALLBACK_HEAD_CHECK and real is None and mode == Mode.STS:
        return None
    size = real.size if real is not None else facts.size
    content_type = base_type(real.content_type if real is not None else facts.mime_type)
    if size is None or size > settings.UPLOAD_MAX_SIZE or not content_type_allowed(content_type):
        return None
    # The token's MAC binds the ticket to its owner's public id, bucket and key: checked here
    # against the id the key names, then the SQL requires the ticket row to say the same.
    public_id = public_id_in(facts.key)
    expected = ticket_token_from(
        ticket_id=ticket_id, owner_public_id=public_id, bucket=bucket, key=facts.key, mode=mode
    )
    if not public_id or not hmac.compare_digest(expected, facts.token):
        return None
    fields = object_fields(facts=facts, real=real, now=now)
    upload = Upload(
        ticket_id=ticket_id, bucket=bucket, key=facts.key, created_at=now, updated_at=now, **fields
    )
    params = dict(
        fields,
        ticket_id=ticket_id,
        event_uid=uuid.uuid4(),
        bucket=bucket,
        key=facts.key,
        public_id=public_id,
        mode=Mode(mode).value,
        now=now,
        issued=UploadTicket.Status.ISSUED.value,
        used=UploadTicket.Status.USED.value,
        active=Upload.Status.ACTIVE.value,
        max_bytes=settings.UPLOAD_QUOTA_BYTES,
        max_objects=settings.UPLOAD_QUOTA_OBJECTS,
    )
    # Bound and prepared on the server (appserver/db): planning this statement cost more
    # than running it.
    open_cursor = getattr(connection, "server_binding_cursor", connection.cursor)
    try:
        with open_cursor() as cursor:
            cursor.execute(ACCEPT_AT_ONCE_SQL, params)
            row = cursor.fetchone()
    except IntegrityError:
        if connection.in_atomic_block:
            raise
        return None  # e.g. the key was recorded meanwhile: nothing written, the locked path says
    if row is None:
        return None
    upload.pk, upload.owner_id, upload.filename, metadata = row
    upload.metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    upload._state.adding = False  # as if saved by the ORM
    return upload
