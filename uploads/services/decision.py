"""Deciding an upload: a callback proven to come from OSS, a confirmation or the sweep names an
object; `callback_decide` records it or refuses it, idempotently.

Two paths decide with the same rules (rules.py): `accept_at_once` (one statement, PostgreSQL)
accepts what everything allows; anything else (a refusal, a replay, a first upload without a
usage row, SQLite) is decided here with the ticket locked, then its owner's usage row.
A refused upload's object is removed after commit, and only if its verified ticket binds the key.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from accounts.models import User
from accounts.selectors import user_storage_prefix
from events.models import EventType
from uploads import oss
from uploads.models import CallbackRefusal, StorageUsage, Upload, UploadTicket
from uploads.services.accept_at_once import accept_at_once
from uploads.services.callback_facts import (
    CallbackAnswer,
    CallbackFacts,
    callback_parse,
    object_fields,
    public_id_in,
    refusal_answer,
    upload_answer,
)
from uploads.services.outbox import refusal_event, upload_event
from uploads.services.quota import reservation_release, usage_locked
from uploads.services.rules import Verdict, callback_refusal
from uploads.services.ticket_tokens import ticket_token, token_claims

Reason = CallbackRefusal.Reason
Mode = UploadTicket.Mode


def _owner_by_key(key: str) -> User | None:
    """The user whose storage prefix holds `key`, if any (prefix = template up to the id)."""
    public_id = public_id_in(key)
    user = User.objects.filter(public_id=public_id).first() if public_id else None
    if user is None or not key.startswith(user_storage_prefix(user=user)):
        return None
    return user


def _removable(*, ticket: UploadTicket, facts: CallbackFacts, real: oss.ObjectInfo | None) -> bool:
    """Whether a refused upload's object may be removed. Only the key bound into the verified
    ticket ever is: the callback body is rendered from a template the app chose, so the key it
    names proves nothing (another user's object, named with its ETag, must stay). Objects no
    ticket accounts for are the sweep's (uploads/sweep.py)."""
    if facts.key != ticket.key or facts.bucket not in ("", ticket.bucket):
        return False
    if real is None and settings.UPLOAD_CALLBACK_HEAD_CHECK:
        return False  # nothing there
    if real is not None and facts.etag and real.etag != facts.etag:
        return False  # replaced since: what is there now was not judged
    return not (
        Upload.objects.filter(bucket=ticket.bucket, key=ticket.key)
        .exclude(status=Upload.Status.DELETED)
        .exists()
    )


def _remove_refused(
    refusal: CallbackRefusal, *, ticket: UploadTicket, facts: CallbackFacts, real
) -> None:
    """After the refusal is committed: remove the ticket's object (bounded), record whether it
    went."""
    if not _removable(ticket=ticket, facts=facts, real=real):
        return
    result = oss.oss_delete_object(key=ticket.key)
    if result.removed:
        CallbackRefusal.objects.filter(pk=refusal.pk).update(object_removed=True)
        refusal.object_removed = True


def _head_or_none(key: str) -> oss.ObjectInfo | None:
    """HeadObject where not knowing is acceptable (the object is then left to reconciliation)."""
    try:
        return _head(key)
    except oss.StorageUnavailable:
        return None


def _head(key: str) -> oss.ObjectInfo | None:
    # Outside any transaction: no row stays locked while OSS answers.
    if not settings.UPLOAD_CALLBACK_HEAD_CHECK:
        return None
    return oss.oss_head_object(key=key)


# Raw SQL because the ORM's compilation of this query (select_for_update + annotate) cost more
# CPU than anything else left on the callback path. The two owner fields come along (not the
# whole user row): the token's MAC binds the owner, and a suspended owner's upload is refused.
_TICKET_LOCKED_SQL = """
SELECT t.*, u.public_id AS owner_public_id, u.is_suspended AS owner_is_suspended
FROM uploads_uploadticket t JOIN accounts_user u ON u.id = t.owner_id
WHERE t.id = %s
"""


def _ticket_locked(ticket_id: uuid.UUID) -> UploadTicket | None:
    """The ticket, locked until the transaction ends (not its owner's row), with the owner's
    public_id and is_suspended."""
    sql = _TICKET_LOCKED_SQL
    if connection.features.has_select_for_update_of:  # not SQLite, which locks the database
        sql += "FOR UPDATE OF t"
    return next(iter(UploadTicket.objects.raw(sql, [ticket_id.hex])), None)


def callback_handle(
    *, body: bytes, content_type: str, bucket_header: str = "", now: datetime | None = None
) -> CallbackAnswer:
    """Decide a callback already proven to come from OSS: record the upload or refuse it."""
    facts = callback_parse(body=body, content_type=content_type)
    now = now or timezone.now()
    bucket = bucket_header or facts.bucket
    if bucket != settings.OSS_BUCKET or (facts.bucket and facts.bucket != bucket):
        # Not our bucket: nothing of ours to remove, only the record.
        refusal = CallbackRefusal.objects.create(
            reason=Reason.WRONG_BUCKET,
            message=f"Uploads to bucket {bucket!r} are not handled here.",
            bucket=bucket[:63],
            key=facts.key,
            size=facts.size,
            content_type=facts.mime_type[:255],
            oss_request_id=facts.request_id,
        )
        return CallbackAnswer(False, refusal_answer(refusal))

    # A url or form ticket's callback comes through a template the app could not edit, so its
    # size, type and ETag are OSS's own: no HeadObject (the row stays unverified until the sweep
    # looks). The mode is only claimed here; the token's MAC covers it and the ticket row must
    # say the same, or nothing is accepted.
    claims = token_claims(facts.token)
    trusted = claims is not None and claims[1] != Mode.STS
    real = None if trusted else _head(facts.key)  # before any lock: none held while OSS answers
    return callback_decide(facts=facts, real=real, bucket=bucket, now=now)


def callback_decide(
    *, facts: CallbackFacts, real: oss.ObjectInfo | None, bucket: str, now: datetime
) -> CallbackAnswer:
    """The one description of an upload's rules, for callbacks, confirmations and the sweep:
    record the object `facts` describe (`real`: OSS's HeadObject of it, if made) or refuse it.
    Idempotent: a replay, or a second path racing the first, gets the same answer and row."""
    claims = token_claims(facts.token)
    if claims is not None:
        ticket_id, mode = claims
        upload = accept_at_once(
            ticket_id=ticket_id, mode=mode, facts=facts, real=real, bucket=bucket, now=now
        )
        if upload is not None:
            return CallbackAnswer(True, upload_answer(upload))
    return callback_decide_locked(facts=facts, real=real, bucket=bucket, now=now)


def callback_decide_locked(
    *, facts: CallbackFacts, real: oss.ObjectInfo | None, bucket: str, now: datetime
) -> CallbackAnswer:
    """`callback_decide` step by step with the ticket locked: every case, and the only path for
    anything `accept_at_once` leaves (a refusal, a replay, a first upload without a usage row
    yet, SQLite). The fast path may accept only what this accepts, with the same rows
    (tests/uploads/test_accept_rules.py runs every rule through both)."""
    claims = token_claims(facts.token)
    ticket_id, mode = claims if claims is not None else (None, Mode.STS)
    with transaction.atomic():
        # Lock order here: the ticket, then its owner's usage row. Everyone else locks usage
        # first but skips locked tickets (expiry), so the two orders cannot deadlock.
        ticket = _ticket_locked(ticket_id) if ticket_id else None
        genuine = ticket is not None and hmac.compare_digest(
            ticket_token(ticket=ticket, owner_public_id=ticket.owner_public_id), facts.token
        )
        if genuine and ticket.key == facts.key and ticket.bucket == bucket:
            answer, refusal = _decide_locked(
                ticket=ticket, facts=facts, real=real, bucket=bucket, now=now
            )
        else:
            answer = refusal = None
    if answer is not None:
        if refusal is not None and refusal.reason != Reason.TICKET_USED:
            if real is None and mode != Mode.STS:
                real = _head_or_none(facts.key)  # a removal always looks at the object first
            _remove_refused(refusal, ticket=ticket, facts=facts, real=real)
            answer = CallbackAnswer(False, refusal_answer(refusal))
        return answer

    named = UploadTicket.objects.filter(bucket=bucket, key=facts.key).exists()
    owner = None if genuine and ticket else _owner_by_key(facts.key)
    with transaction.atomic():
        refusal = _refusal_unbound(
            facts=facts,
            real=real,
            bucket=bucket,
            ticket=ticket if genuine else None,
            owner=owner,
            named=named or genuine,
        )
    # Never removed here: no verified ticket binds the key this body names (the sweep accounts
    # for whatever is stored there).
    return CallbackAnswer(False, refusal_answer(refusal))


def _refusal_unbound(
    *,
    facts: CallbackFacts,
    real: oss.ObjectInfo | None,
    bucket: str,
    ticket: UploadTicket | None,
    owner: User | None,
    named: bool,
) -> CallbackRefusal:
    """The refusal of a callback no verified ticket of this key explains, and its event when
    the user is known (in the caller's transaction)."""
    refusal = CallbackRefusal.objects.create(
        reason=Reason.TICKET_MISMATCH if named else Reason.NO_TICKET,
        message=(
            "The callback's ticket does not match this object."
            if named
            else "No upload ticket names this object."
        ),
        owner_id=ticket.owner_id if ticket else getattr(owner, "pk", None),
        ticket=ticket,
        bucket=bucket,
        key=facts.key,
        size=real.size if real else facts.size,
        content_type=(real.content_type if real else facts.mime_type)[:255],
        oss_request_id=facts.request_id,
    )
    public_id = ticket.owner_public_id if ticket else getattr(owner, "public_id", "")
    if public_id:
        refusal_event(refusal=refusal, owner_public_id=public_id)
    return refusal


def usage_commit(*, user_id: int, reserved_bytes: int, size: int) -> bool:
    """Release an issued ticket's reservation and count the object, if the quota allows it.

    One conditional UPDATE that both checks and writes, under the row lock it takes (the
    arithmetic of `reservation_release` and `usage_limits`, done by the database): False when
    the object does not fit, or the usage row does not exist yet, and then nothing changed."""
    bytes_reserved = Greatest(F("bytes_reserved") - reserved_bytes, 0)
    objects_reserved = Greatest(F("objects_reserved") - 1, 0)
    fits = Q(
        bytes_used__lte=Coalesce("max_bytes", settings.UPLOAD_QUOTA_BYTES) - bytes_reserved - size,
        objects_used__lte=Coalesce("max_objects", settings.UPLOAD_QUOTA_OBJECTS)
        - objects_reserved
        - 1,
    )
    updated = StorageUsage.objects.filter(fits, user_id=user_id).update(
        bytes_used=F("bytes_used") + size,
        objects_used=F("objects_used") + 1,
        bytes_reserved=bytes_reserved,
        objects_reserved=objects_reserved,
        updated_at=timezone.now(),
    )
    return updated == 1


def _decide_locked(
    *,
    ticket: UploadTicket,
    facts: CallbackFacts,
    real: oss.ObjectInfo | None,
    bucket: str,
    now: datetime,
) -> tuple[CallbackAnswer, CallbackRefusal | None]:
    """Inside the transaction, the ticket locked: accept, replay, or refuse (row written; the
    caller removes the object after commit)."""
    size = real.size if real is not None else (facts.size or 0)
    if ticket.status == UploadTicket.Status.USED:
        existing = Upload.objects.filter(ticket=ticket).first()
        if existing is not None and (not facts.etag or existing.etag == facts.etag):
            return CallbackAnswer(True, upload_answer(existing)), None  # a replay: same answer
        verdict = Verdict(Reason.TICKET_USED, "This upload ticket was already used.")
    elif ticket.status == UploadTicket.Status.REFUSED:
        previous = CallbackRefusal.objects.filter(ticket=ticket).order_by("-id").first()
        if previous is not None:
            return CallbackAnswer(False, refusal_answer(previous)), None
        verdict = Verdict(Reason.TICKET_USED, "This upload ticket was already refused.")
    elif settings.UPLOAD_CALLBACK_HEAD_CHECK and real is None and ticket.mode == Mode.STS:
        verdict = Verdict(Reason.OBJECT_MISSING, "OSS has no object under this key.")
    else:
        verdict = callback_refusal(ticket=ticket, facts=facts, real=real, now=now)
    if verdict is None:
        upload = _upload_new(ticket=ticket, facts=facts, real=real, now=now)
        accepted = _accept(ticket=ticket, upload=upload, now=now)
        if not accepted:
            # Over quota, or no usage row yet: create it if missing (locked), then check again.
            usage_locked(user_id=ticket.owner_id)
            accepted = _accept(ticket=ticket, upload=upload, now=now)
        if accepted:
            upload_event(
                type=EventType.UPLOAD_ACCEPTED,
                upload=upload,
                owner_public_id=ticket.owner_public_id,
            )
            return CallbackAnswer(True, upload_answer(upload)), None
        verdict = Verdict(Reason.QUOTA_EXCEEDED, "The upload exceeds the storage quota.")
    usage = usage_locked(user_id=ticket.owner_id)
    if ticket.status == UploadTicket.Status.ISSUED:
        reservation_release(usage, ticket)
        usage.save(update_fields=["bytes_reserved", "objects_reserved", "updated_at"])
        ticket.status = UploadTicket.Status.REFUSED
        ticket.save(update_fields=["status", "reserved_bytes"])
    refusal = CallbackRefusal.objects.create(
        reason=verdict.reason,
        message=verdict.message,
        owner_id=ticket.owner_id,
        ticket=ticket,
        bucket=bucket,
        key=facts.key,
        size=size if (real or facts.size is not None) else None,
        content_type=(real.content_type if real else facts.mime_type)[:255],
        oss_request_id=facts.request_id,
    )
    refusal_event(refusal=refusal, owner_public_id=ticket.owner_public_id)
    return CallbackAnswer(False, refusal_answer(refusal)), refusal


def _upload_new(
    *, ticket: UploadTicket, facts: CallbackFacts, real: oss.ObjectInfo | None, now: datetime
) -> Upload:
    """The upload a ticket's callback records (not saved yet), as of the decision's `now`, as
    the fast path's statement records it."""
    return Upload(
        owner_id=ticket.owner_id,
        ticket_id=ticket.pk,
        bucket=ticket.bucket,
        key=ticket.key,
        filename=ticket.filename,
        metadata=ticket.metadata,
        created_at=now,
        updated_at=now,
        **object_fields(facts=facts, real=real, now=now),
    )


def _accept(*, ticket: UploadTicket, upload: Upload, now: datetime) -> bool:
    """Commit the quota, mark the ticket used and insert `upload` (its pk set): all or nothing.

    False, and nothing written, if the object does not fit the quota or the usage row is
    missing. The caller holds the ticket's lock; the usage row is locked second, here."""
    if not usage_commit(
        user_id=ticket.owner_id, reserved_bytes=ticket.reserved_bytes, size=upload.size
    ):
        return False
    UploadTicket.objects.filter(pk=ticket.pk).update(
        status=UploadTicket.Status.USED, used_at=now, reserved_bytes=0
    )
    upload.save(force_insert=True)
    return True
