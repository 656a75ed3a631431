"""Upload tickets, verified callbacks, quotas and deletions (every write of the uploads app).

Locks (SELECT ... FOR UPDATE inside transaction.atomic): ticket requests, expiry sweeps and
deletions lock the owner's StorageUsage row first, then tickets (SKIP LOCKED) or the upload row;
a callback locks its ticket, then the usage row. Parallel requests of one user serialise on the
usage row, and since nobody waits for a ticket while holding the usage row, nothing deadlocks.

Quota accounting: issuing a ticket reserves its declared size and one object; the verified
callback releases the reservation and adds the object's real size to what is used; a refused
callback or an expired ticket releases the reservation.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import posixpath
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.models import User
from accounts.selectors import user_storage_prefix
from appserver.errors import AccountSuspended, AppError, InvalidInput, NotFound
from uploads import oss
from uploads.content_types import content_type_allowed, content_type_extension
from uploads.models import CallbackRefusal, StorageUsage, Upload, UploadTicket
from uploads.selectors import usage_limits

logger = logging.getLogger(__name__)

Reason = CallbackRefusal.Reason
Mode = UploadTicket.Mode
CALLBACK_BODY_TYPE = "application/x-www-form-urlencoded"
# Form-encoded, not JSON: OSS URL-encodes every substituted value in form bodies, so the body
# parses the same whatever a value contains (JSON substitution differs between OSS and tools).
CALLBACK_BODY = (
    "bucket=${bucket}&object=${object}&etag=${etag}&size=${size}&mimeType=${mimeType}"
    "&height=${imageInfo.height}&width=${imageInfo.width}&format=${imageInfo.format}"
    "&crc64=${crc64}&reqId=${reqId}&operation=${operation}&ticket=${x:ticket}"
)


class QuotaExceeded(AppError):
    status, code, message = 403, "quota_exceeded", "This upload would exceed your storage quota."


# --- tickets -----------------------------------------------------------------------------------


def _hmac_secret() -> str:
    return settings.UPLOAD_CALLBACK_HMAC_KEY or settings.SECRET_KEY


def ticket_token(*, ticket: UploadTicket, owner_public_id: str) -> str:
    """The x:ticket callback variable: the ticket id and a MAC binding it to owner and key (and,
    for url and form tickets, to the mode, which tells the callback it needs no HeadObject)."""
    return _token(
        ticket_id=ticket.id,
        owner_public_id=owner_public_id,
        bucket=ticket.bucket,
        key=ticket.key,
        mode=ticket.mode,
    )


def _token(
    *, ticket_id: uuid.UUID, owner_public_id: str, bucket: str, key: str, mode: str = Mode.STS
) -> str:
    message = f"{ticket_id.hex}\n{owner_public_id}\n{bucket}\n{key}"
    if mode != Mode.STS:
        message += f"\n{mode}"
    mac = salted_hmac("uploads.ticket", message, secret=_hmac_secret(), algorithm="sha256")
    tag = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
    return f"{ticket_id.hex}.{tag}" if mode == Mode.STS else f"{ticket_id.hex}.{mode}.{tag}"


def _token_claims(token: str) -> tuple[uuid.UUID, str] | None:
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


def _object_key(*, prefix: str, ticket_id: uuid.UUID, content_type: str) -> str:
    # The server picks the key: the user's prefix, a date folder for humans browsing the bucket,
    # the ticket id for uniqueness, and the extension of the checked content type (never the
    # file name's: "x.html" declared as image/png must not be served as .html).
    ext = content_type_extension(content_type)
    return f"{prefix}{timezone.now():%Y/%m/%d}/{ticket_id.hex}{ext}"


def _usage_locked(*, user_id: int) -> StorageUsage:
    """The owner's usage row, locked until the transaction ends (created on first use)."""
    usage = StorageUsage.objects.select_for_update().filter(user_id=user_id).first()
    if usage is None:
        StorageUsage.objects.bulk_create([StorageUsage(user_id=user_id)], ignore_conflicts=True)
        usage = StorageUsage.objects.select_for_update().get(user_id=user_id)
    return usage


def _release(usage: StorageUsage, ticket: UploadTicket) -> None:
    """Give a ticket's reservation back (caller holds both locks and saves both)."""
    if ticket.status == UploadTicket.Status.ISSUED:
        usage.bytes_reserved = max(0, usage.bytes_reserved - ticket.reserved_bytes)
        usage.objects_reserved = max(0, usage.objects_reserved - 1)
        ticket.reserved_bytes = 0


def _expire_locked(*, usage: StorageUsage, now: datetime) -> int:
    overdue = list(
        # SKIP LOCKED: a ticket locked by a callback in flight is that callback's to settle
        # (and waiting for it here, while holding the usage row, could deadlock).
        UploadTicket.objects.select_for_update(skip_locked=True).filter(
            owner_id=usage.user_id, status=UploadTicket.Status.ISSUED, expires_at__lte=now
        )
    )
    for ticket in overdue:
        _release(usage, ticket)
        ticket.status = UploadTicket.Status.EXPIRED
    if overdue:
        UploadTicket.objects.bulk_update(overdue, ["status", "reserved_bytes"])
    return len(overdue)


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
            usage = _usage_locked(user_id=owner_id)
            count = _expire_locked(usage=usage, now=now)
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
    with transaction.atomic():
        usage = _usage_locked(user_id=user.pk)
        # Lazily, so quotas recover even where no cron runs expire_tickets.
        _expire_locked(usage=usage, now=now)
        max_bytes, max_objects = usage_limits(usage=usage)
        if usage.bytes_used + usage.bytes_reserved + size > max_bytes:
            left = max(0, max_bytes - usage.bytes_used - usage.bytes_reserved)
            raise QuotaExceeded(
                f"This upload needs {size} bytes; {left} are left (pending uploads count "
                "until they finish or their tickets expire)."
            )
        if usage.objects_used + usage.objects_reserved + 1 > max_objects:
            raise QuotaExceeded(f"You already have the {max_objects} files allowed.")
        usage.bytes_reserved += size
        usage.objects_reserved += 1
        usage.save(update_fields=["bytes_reserved", "objects_reserved", "updated_at"])
        ticket = UploadTicket.objects.create(
            id=ticket_id,
            owner=user,
            bucket=settings.OSS_BUCKET,
            key=_object_key(prefix=prefix, ticket_id=ticket_id, content_type=content_type),
            filename=filename,
            declared_size=size,
            content_type=content_type,
            metadata=metadata or {},
            reserved_bytes=size,
            mode=mode,
            expires_at=expires_at,
        )
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


# --- callbacks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackFacts:
    """What the callback body claims (rendered by OSS from a template the app chose)."""

    bucket: str
    key: str
    etag: str
    size: int | None
    mime_type: str
    width: int | None
    height: int | None
    image_format: str
    crc64: str
    request_id: str
    operation: str
    token: str


@dataclass(frozen=True)
class CallbackAnswer:
    """The JSON OSS relays to the app, always with HTTP 200 so the app can read it."""

    accepted: bool
    body: dict[str, Any]


class CallbackBodyInvalid(InvalidInput):
    code, message = "callback_body_invalid", "The callback body is not one this server issued."


def _int_or_none(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def callback_parse(*, body: bytes, content_type: str) -> CallbackFacts:
    try:
        text = body.decode("utf-8")
        if content_type.split(";")[0].strip().lower() == "application/json":
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            fields = {str(k): "" if v is None else str(v) for k, v in raw.items()}
        else:
            fields = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
    except (UnicodeDecodeError, ValueError) as exc:
        raise CallbackBodyInvalid() from exc
    key = fields.get("object", "")
    if not key or len(key) > 1023:
        raise CallbackBodyInvalid()
    return CallbackFacts(
        bucket=fields.get("bucket", ""),
        key=key,
        etag=fields.get("etag", "").strip('"').upper(),
        size=_int_or_none(fields.get("size")),
        mime_type=fields.get("mimeType", ""),
        width=_int_or_none(fields.get("width") or None),
        height=_int_or_none(fields.get("height") or None),
        image_format=fields.get("format", "")[:16],
        crc64=fields.get("crc64", "")[:20],
        request_id=fields.get("reqId", "")[:64],
        operation=fields.get("operation", "")[:64],
        token=fields.get("ticket", "")[:200],
    )


def upload_answer(upload: Upload) -> dict[str, Any]:
    return {
        "ok": True,
        "upload": {
            "id": upload.pk,
            "key": upload.key,
            "bucket": upload.bucket,
            "filename": upload.filename,
            "size": upload.size,
            "content_type": upload.content_type,
            "etag": upload.etag,
            "image_width": upload.image_width,
            "image_height": upload.image_height,
            "image_format": upload.image_format,
            "metadata": upload.metadata,
            "created_at": upload.created_at.isoformat().replace("+00:00", "Z"),
        },
    }


def _refusal_answer(refusal: CallbackRefusal) -> dict[str, Any]:
    return {
        "ok": False,
        "error": {"code": refusal.reason, "message": refusal.message},
        "key": refusal.key,
        "object_removed": refusal.object_removed,
    }


def _base_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def _public_id_in(key: str) -> str:
    """The public id `key` names in the storage prefix template ("" if none); unverified."""
    head, _, _tail = settings.STORAGE_PREFIX_TEMPLATE.partition("{user_public_id}")
    return key[len(head) :].split("/", 1)[0] if key.startswith(head) else ""


def _owner_by_key(key: str) -> User | None:
    """The user whose storage prefix holds `key`, if any (prefix = template up to the id)."""
    public_id = _public_id_in(key)
    user = User.objects.filter(public_id=public_id).first() if public_id else None
    if user is None or not key.startswith(user_storage_prefix(user=user)):
        return None
    return user


@dataclass(frozen=True)
class _Verdict:
    reason: str
    message: str


def _check(
    *, ticket: UploadTicket, facts: CallbackFacts, real: oss.ObjectInfo | None, now: datetime
) -> _Verdict | None:
    """Why a genuine ticket's callback must be refused, or None. Quota is checked later."""
    if ticket.status == UploadTicket.Status.EXPIRED or ticket.expires_at <= now:
        return _Verdict(Reason.TICKET_EXPIRED, "The upload ticket expired before the upload ended.")
    if ticket.owner_is_suspended:
        return _Verdict(Reason.OWNER_SUSPENDED, "The account is suspended.")
    size = real.size if real is not None else facts.size
    if size is None:
        return _Verdict(Reason.SIZE_MISMATCH, "The callback does not state the object's size.")
    if size > settings.UPLOAD_MAX_SIZE:
        return _Verdict(
            Reason.TOO_LARGE, f"The object is larger than {settings.UPLOAD_MAX_SIZE} bytes."
        )
    if size > ticket.declared_size:
        return _Verdict(
            Reason.SIZE_MISMATCH,
            f"The object has {size} bytes; the ticket allowed {ticket.declared_size}.",
        )
    real_type = _base_type(real.content_type if real is not None else facts.mime_type)
    if real_type != _base_type(ticket.content_type):
        return _Verdict(
            Reason.TYPE_MISMATCH,
            f"The object is {real_type or 'untyped'}; the ticket declared {ticket.content_type}.",
        )
    if not content_type_allowed(real_type):
        return _Verdict(Reason.TYPE_NOT_ALLOWED, f"Files of type {real_type} are not accepted.")
    return None


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
        return CallbackAnswer(False, _refusal_answer(refusal))

    # A url or form ticket's callback comes through a template the app could not edit, so its
    # size, type and ETag are OSS's own: no HeadObject (the row stays unverified until the sweep
    # looks). The mode is only claimed here; the token's MAC covers it and the ticket row must
    # say the same, or nothing is accepted.
    claims = _token_claims(facts.token)
    trusted = claims is not None and claims[1] != Mode.STS
    real = None if trusted else _head(facts.key)  # before any lock: none held while OSS answers
    return callback_decide(facts=facts, real=real, bucket=bucket, now=now)


def callback_decide(
    *, facts: CallbackFacts, real: oss.ObjectInfo | None, bucket: str, now: datetime
) -> CallbackAnswer:
    """The one description of an upload's rules, for callbacks, confirmations and the sweep:
    record the object `facts` describe (`real`: OSS's HeadObject of it, if made) or refuse it.
    Idempotent: a replay, or a second path racing the first, gets the same answer and row."""
    claims = _token_claims(facts.token)
    ticket_id, mode = claims if claims is not None else (None, Mode.STS)
    if ticket_id is not None:
        upload = _accept_at_once(
            ticket_id=ticket_id, mode=mode, facts=facts, real=real, bucket=bucket, now=now
        )
        if upload is not None:
            return CallbackAnswer(True, upload_answer(upload))
    # Anything else (a refusal, a replay, a first upload without a usage row yet, SQLite) is
    # decided with the ticket locked, step by step.
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
            answer = CallbackAnswer(False, _refusal_answer(refusal))
        return answer

    named = UploadTicket.objects.filter(bucket=bucket, key=facts.key).exists()
    refusal = CallbackRefusal.objects.create(
        reason=Reason.TICKET_MISMATCH if named or genuine else Reason.NO_TICKET,
        message=(
            "The callback's ticket does not match this object."
            if named or genuine
            else "No upload ticket names this object."
        ),
        owner_id=ticket.owner_id
        if genuine and ticket
        else getattr(_owner_by_key(facts.key), "pk", None),
        ticket=ticket if genuine else None,
        bucket=bucket,
        key=facts.key,
        size=real.size if real else facts.size,
        content_type=(real.content_type if real else facts.mime_type)[:255],
        oss_request_id=facts.request_id,
    )
    # Never removed here: no verified ticket binds the key this body names (the sweep accounts
    # for whatever is stored there).
    return CallbackAnswer(False, _refusal_answer(refusal))


def _usage_commit(*, user_id: int, reserved_bytes: int, size: int) -> bool:
    """Release an issued ticket's reservation and count the object, if the quota allows it.

    One conditional UPDATE that both checks and writes, under the row lock it takes (the same
    arithmetic as `_release` and `usage_limits`, done by the database): False when the object
    does not fit, or the usage row does not exist yet, and then nothing changed."""
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
        verdict = _Verdict(Reason.TICKET_USED, "This upload ticket was already used.")
    elif ticket.status == UploadTicket.Status.REFUSED:
        previous = CallbackRefusal.objects.filter(ticket=ticket).order_by("-id").first()
        if previous is not None:
            return CallbackAnswer(False, _refusal_answer(previous)), None
        verdict = _Verdict(Reason.TICKET_USED, "This upload ticket was already refused.")
    elif settings.UPLOAD_CALLBACK_HEAD_CHECK and real is None and ticket.mode == Mode.STS:
        verdict = _Verdict(Reason.OBJECT_MISSING, "OSS has no object under this key.")
    else:
        verdict = _check(ticket=ticket, facts=facts, real=real, now=now)
    if verdict is None:
        upload = _upload_new(ticket=ticket, facts=facts, real=real)
        accepted = _accept(ticket=ticket, upload=upload, now=now)
        if not accepted:
            # Over quota, or no usage row yet: create it if missing (locked), then check again.
            _usage_locked(user_id=ticket.owner_id)
            accepted = _accept(ticket=ticket, upload=upload, now=now)
        if accepted:
            return CallbackAnswer(True, upload_answer(upload)), None
        verdict = _Verdict(Reason.QUOTA_EXCEEDED, "The upload exceeds the storage quota.")
    usage = _usage_locked(user_id=ticket.owner_id)
    if ticket.status == UploadTicket.Status.ISSUED:
        _release(usage, ticket)
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
    return CallbackAnswer(False, _refusal_answer(refusal)), refusal


def _upload_new(
    *, ticket: UploadTicket, facts: CallbackFacts, real: oss.ObjectInfo | None
) -> Upload:
    """The upload a ticket's callback records (not saved yet)."""
    now = timezone.now()
    return Upload(
        owner_id=ticket.owner_id,
        ticket_id=ticket.pk,
        bucket=ticket.bucket,
        key=ticket.key,
        filename=ticket.filename,
        metadata=ticket.metadata,
        created_at=now,
        updated_at=now,
        **_object_fields(facts=facts, real=real, now=now),
    )


def _object_fields(
    *, facts: CallbackFacts, real: oss.ObjectInfo | None, now: datetime
) -> dict[str, Any]:
    """What an upload row records of the object: OSS's own HeadObject answer where there is
    one (verified now), else what the callback says (unverified: the sweep checks it)."""
    return {
        "verified_at": now if real is not None else None,
        "size": real.size if real is not None else (facts.size or 0),
        "etag": (real.etag if real else facts.etag)[:64],
        "crc64": (real.crc64 if real and real.crc64 else facts.crc64)[:20],
        "content_type": _base_type(real.content_type if real else facts.mime_type)[:255],
        "image_width": facts.width,
        "image_height": facts.height,
        "image_format": facts.image_format,
        "oss_request_id": facts.request_id,
    }


def _accept(*, ticket: UploadTicket, upload: Upload, now: datetime) -> bool:
    """Commit the quota, mark the ticket used and insert `upload` (its pk set): all or nothing.

    False, and nothing written, if the object does not fit the quota or the usage row is
    missing. The caller holds the ticket's lock; the usage row is locked second, here."""
    if not _usage_commit(
        user_id=ticket.owner_id, reserved_bytes=ticket.reserved_bytes, size=upload.size
    ):
        return False
    UploadTicket.objects.filter(pk=ticket.pk).update(
        status=UploadTicket.Status.USED, used_at=now, reserved_bytes=0
    )
    upload.save(force_insert=True)
    return True


# A callback that everything allows, accepted in one autocommit statement: one round trip
# instead of five (health check, BEGIN, lock, write, COMMIT), which were most of a callback's
# cost. `locked` locks the ticket by primary key alone: with the conditions beside the id, the
# planner could walk the partial index of issued tickets (every upload in flight) instead, as
# it did for every statement not yet prepared. `t` keeps it only if it is still issued,
# unexpired, its owner not suspended and the object within what it declared (on the newest
# row version: a row locked FOR UPDATE is re-read once another callback releases it);
# `usage` commits the bytes only if they fit the quota (the same arithmetic as
# `_usage_commit`); `ticket` is marked used only if `usage` returned a row, and the upload is
# inserted only if `ticket` did. Any condition unmet -> no row, nothing written.
# Column lists match uploads/models.py.
_ACCEPT_AT_ONCE_SQL = """
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
)
INSERT INTO uploads_upload (
    owner_id, ticket_id, bucket, key, filename, size, etag, crc64, content_type, image_width,
    image_height, image_format, metadata, oss_request_id, status, created_at, updated_at,
    verified_at
)
SELECT owner_id, id, %(bucket)s, %(key)s, filename, %(size)s, %(etag)s, %(crc64)s,
    %(content_type)s, %(image_width)s, %(image_height)s, %(image_format)s, metadata,
    %(oss_request_id)s, %(active)s, %(now)s, %(now)s, %(verified_at)s
FROM ticket
RETURNING id, owner_id, filename, metadata
"""


def _accept_at_once(
    *,
    ticket_id: uuid.UUID,
    mode: str,
    facts: CallbackFacts,
    real: oss.ObjectInfo | None,
    bucket: str,
    now: datetime,
) -> Upload | None:
    """The recorded upload if this callback is accepted at once (PostgreSQL); None when the
    ticket-locked path must decide. Accepts only what that path would accept too: the checks
    of `_check` and `_decide_locked` that need no row are made here, the others in the SQL."""
    if connection.vendor != "postgresql":
        return None
    if settings.UPLOAD_CALLBACK_HEAD_CHECK and real is None and mode == Mode.STS:
        return None
    size = real.size if real is not None else facts.size
    content_type = _base_type(real.content_type if real is not None else facts.mime_type)
    if size is None or size > settings.UPLOAD_MAX_SIZE or not content_type_allowed(content_type):
        return None
    # The token's MAC binds the ticket to its owner's public id, bucket and key: checked here
    # against the id the key names, then the SQL requires the ticket row to say the same.
    public_id = _public_id_in(facts.key)
    expected = _token(
        ticket_id=ticket_id, owner_public_id=public_id, bucket=bucket, key=facts.key, mode=mode
    )
    if not public_id or not hmac.compare_digest(expected, facts.token):
        return None
    fields = _object_fields(facts=facts, real=real, now=now)
    upload = Upload(
        ticket_id=ticket_id, bucket=bucket, key=facts.key, created_at=now, updated_at=now, **fields
    )
    params = dict(
        fields,
        ticket_id=ticket_id,
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
            cursor.execute(_ACCEPT_AT_ONCE_SQL, params)
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


# --- the user's uploads ------------------------------------------------------------------------


def upload_delete(*, user: User, upload_id: int) -> None:
    """Delete the object in OSS, then mark the row deleted and give its quota back.

    Idempotent: deleting an upload already deleted is a no-op (the API answers 204 again)."""
    upload = Upload.objects.filter(owner=user, pk=upload_id).first()
    if upload is None:
        raise NotFound("No such upload.")
    if upload.status == Upload.Status.DELETED:
        return
    result = oss.oss_delete_object(key=upload.key)
    if not result.removed:
        raise oss.StorageUnavailable("The object could not be deleted from storage. Retry later.")
    with transaction.atomic():
        usage = _usage_locked(user_id=user.pk)
        locked = Upload.objects.select_for_update().get(pk=upload.pk)
        if locked.status == Upload.Status.DELETED:
            return
        if locked.status == Upload.Status.ACTIVE:
            usage.bytes_used = max(0, usage.bytes_used - locked.size)
            usage.objects_used = max(0, usage.objects_used - 1)
            usage.save(update_fields=["bytes_used", "objects_used", "updated_at"])
        Upload.objects.filter(pk=locked.pk).update(
            status=Upload.Status.DELETED, deleted_at=timezone.now(), updated_at=timezone.now()
        )


def uploads_delete_by_admin(*, upload_ids: list[int]) -> tuple[int, int]:
    """Admin action: delete objects and rows; returns (deleted, failed)."""
    deleted = failed = 0
    for upload in Upload.objects.filter(pk__in=upload_ids).select_related("owner"):
        try:
            upload_delete(user=upload.owner, upload_id=upload.pk)
            deleted += 1
        except AppError:
            failed += 1
    return deleted, failed


# --- repairs found by reconciliation (reports.reconciliation) ------------------------------
# Each is its own transaction and re-checks the state the caller saw; same lock order as above.


def upload_adopt(
    *, owner: User, key: str, info: oss.ObjectInfo, stored_at: datetime, by: str = "reconciliation"
) -> Upload | None:
    """Record an object that is in the owner's prefix but has no row (its callback never came).

    None, and nothing written, when it may not be kept: a type no ticket could allow, larger
    than any upload may be, or beyond the owner's quota (pending reservations included). The
    caller deletes it then."""
    if info.size > settings.UPLOAD_MAX_SIZE or not content_type_allowed(info.content_type):
        return None
    with transaction.atomic():
        usage = _usage_locked(user_id=owner.pk)
        max_bytes, max_objects = usage_limits(usage=usage)
        if (
            usage.bytes_used + usage.bytes_reserved + info.size > max_bytes
            or usage.objects_used + usage.objects_reserved + 1 > max_objects
        ):
            return None
        upload = Upload.objects.create(
            owner=owner,
            bucket=settings.OSS_BUCKET,
            key=key,
            filename=posixpath.basename(key)[:255],
            size=info.size,
            etag=info.etag,
            crc64=info.crc64,
            content_type=_base_type(info.content_type) or "application/octet-stream",
            metadata={"adopted_by": by},
            oss_request_id=info.request_id[:64],
            verified_at=timezone.now(),
        )
        # The upload happened when OSS stored it, not when we noticed it.
        Upload.objects.filter(pk=upload.pk).update(created_at=stored_at)
        usage.bytes_used += info.size
        usage.objects_used += 1
        usage.save(update_fields=["bytes_used", "objects_used", "updated_at"])
    return upload


def upload_set_missing(*, upload_id: int, missing: bool) -> bool:
    """Mark an active upload missing (usage released) or a missing one active again (counted).

    Returns False when the row is no longer in the state the caller saw (someone else acted)."""
    owner_id = Upload.objects.filter(pk=upload_id).values_list("owner_id", flat=True).first()
    if owner_id is None:
        return False
    before, after = (
        (Upload.Status.ACTIVE, Upload.Status.MISSING)
        if missing
        else (Upload.Status.MISSING, Upload.Status.ACTIVE)
    )
    with transaction.atomic():
        usage = _usage_locked(user_id=owner_id)
        upload = Upload.objects.select_for_update().filter(pk=upload_id, status=before).first()
        if upload is None:
            return False
        sign = -1 if missing else 1
        usage.bytes_used = max(0, usage.bytes_used + sign * upload.size)
        usage.objects_used = max(0, usage.objects_used + sign)
        usage.save(update_fields=["bytes_used", "objects_used", "updated_at"])
        Upload.objects.filter(pk=upload.pk).update(status=after, updated_at=timezone.now())
    return True


def ticket_expire(*, ticket_id, cutoff: datetime) -> bool:
    """Expire one overdue ticket and release its reservation (False if it changed meanwhile)."""
    owner_id = UploadTicket.objects.filter(pk=ticket_id).values_list("owner_id", flat=True).first()
    if owner_id is None:
        return False
    with transaction.atomic():
        usage = _usage_locked(user_id=owner_id)
        ticket = (
            # SKIP LOCKED as in _expire_locked: a callback in flight holds the ticket and then
            # waits for the usage row this transaction holds; waiting here would deadlock.
            UploadTicket.objects.select_for_update(skip_locked=True)
            .filter(pk=ticket_id, status=UploadTicket.Status.ISSUED, expires_at__lte=cutoff)
            .first()
        )
        if ticket is None:
            return False
        _release(usage, ticket)
        usage.save(update_fields=["bytes_reserved", "objects_reserved", "updated_at"])
        UploadTicket.objects.filter(pk=ticket.pk).update(
            status=UploadTicket.Status.EXPIRED, reserved_bytes=0
        )
    return True
