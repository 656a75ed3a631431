"""Leaving: erasing an account (objects, rows, credentials) and exporting its data.

An erasure is recorded first (AccountErasure, state "deleting_objects"), the account is
disabled in the same transaction, then the prefix is emptied page by page with
DeleteMultipleObjects, then the rows go and the state becomes "done" in one transaction. If
anything stops it (OSS down, a worker killed), `erasure_continue` picks the row up where it is:
`manage.py expire_guests` (which also erases expired guests) continues every unfinished one.
It lives in uploads because it empties the user's prefix (uploads owns OSS and the rows).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.identities import guests_expired
from accounts.models import AccountErasure, ExternalIdentity, LoginSession, User
from accounts.selectors import user_storage_prefix
from accounts.signals import user_erasing, user_suspended
from accounts.token_state import tokens_revoked
from appserver.errors import Conflict, PermissionDenied
from events.models import EventType
from events.services import event_record
from uploads import oss
from uploads.models import CallbackRefusal, Upload

logger = logging.getLogger(__name__)

# Full passes over the prefix before giving up for now: objects can still arrive from STS
# credentials handed out before the erasure (they stay valid until they expire), and each
# callback for them is refused and removed, but a pass may see one in between.
_PASSES = 3


def account_erase(*, user: User, reason: str) -> AccountErasure:
    """Erase the user: no credentials from now on, every object and row gone, a receipt kept."""
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        erasure = AccountErasure.objects.filter(user=locked).first()
        if erasure is None:
            erasure = AccountErasure.objects.create(
                user=locked,
                public_id=locked.public_id,
                prefix=user_storage_prefix(user=locked),
                reason=reason,
            )
        # Inactive: its access tokens are refused on every worker from now on (the token
        # epoch, accounts/token_state.py); suspended: no credentials or tickets, and late upload
        # callbacks are refused (their objects removed).
        with tokens_revoked(user=locked):
            User.objects.filter(pk=locked.pk).update(
                is_active=False,
                is_suspended=True,
                suspended_at=timezone.now(),
                suspension_reason="erasure",
            )
        # Every login session ends with the user row; until then inactive users' refresh
        # tokens are refused (accounts.services).
    # tokens drops the cached STS credentials (those already handed out expire at Alibaba).
    user_suspended.send(sender=User, user=locked)
    return erasure_continue(erasure=erasure)


def _empty_prefix(erasure: AccountErasure) -> None:
    oss.oss_abort_multipart_uploads(prefix=erasure.prefix)
    for _ in range(_PASSES):
        marker, seen = "", 0
        while True:
            page = oss.oss_list_page(prefix=erasure.prefix, marker=marker, max_keys=1000)
            sizes = {o.key: o.size for o in page.objects}
            deleted = oss.oss_delete_objects(keys=list(sizes))
            seen += len(sizes)
            if deleted:
                AccountErasure.objects.filter(pk=erasure.pk).update(
                    objects_deleted=F("objects_deleted") + len(deleted),
                    bytes_deleted=F("bytes_deleted") + sum(sizes.get(k, 0) for k in deleted),
                )
            if not page.truncated:
                break
            marker = page.next_marker
        if seen == 0:
            return
    raise oss.StorageUnavailable(
        "Objects keep appearing under the erased prefix; the erasure continues later."
    )


def erasure_continue(*, erasure: AccountErasure) -> AccountErasure:
    """Continue an erasure from its state (idempotent: a done erasure is returned as is)."""
    if erasure.state == AccountErasure.State.DONE:
        return erasure
    _empty_prefix(erasure)
    with transaction.atomic():
        erasure = AccountErasure.objects.select_for_update().get(pk=erasure.pk)
        if erasure.state == AccountErasure.State.DONE:
            return erasure
        user_id = erasure.user_id
        if user_id is not None:
            uploads = Upload.objects.filter(owner_id=user_id).count()
            identities = ExternalIdentity.objects.filter(user_id=user_id).count()
            CallbackRefusal.objects.filter(owner_id=user_id).delete()
            user = User.objects.get(pk=user_id)
            user_erasing.send(sender=User, user=user)
            LogEntry.objects.filter(
                content_type=ContentType.objects.get_for_model(User), object_id=str(user_id)
            ).delete()
            # Cascades: uploads, tickets, usage, identities, login sessions.
            User.objects.filter(pk=user_id).delete()
            erasure.uploads_deleted, erasure.identities_deleted = uploads, identities
            # The facts of the receipt only: the user's keys and metadata are gone with them.
            event_record(
                type=EventType.USER_ERASED,
                user_public_id=erasure.public_id,
                data={
                    "reason": erasure.reason,
                    "uploads_deleted": uploads,
                    "objects_deleted": erasure.objects_deleted,
                    "bytes_deleted": erasure.bytes_deleted,
                    "guest": user.is_guest,
                },
            )
        erasure.user = None
        erasure.state = AccountErasure.State.DONE
        erasure.finished_at = timezone.now()
        erasure.save()
    logger.info("Erased account %s (%s objects)", erasure.public_id, erasure.objects_deleted)
    return erasure


@dataclass(frozen=True)
class GuestExpiry:
    guests: int  # expired guests erased to the end
    continued: int  # earlier erasures finished
    waiting: int  # erasures the storage service still holds up (the next run continues them)


def guests_expire(*, now: datetime | None = None) -> GuestExpiry:
    """Erase guests that outlived GUEST_TTL_DAYS without upgrading, then continue every
    unfinished erasure. Safe to run from several hosts: each erasure is idempotent."""
    guests = continued = waiting = 0
    for guest in guests_expired(now=now):
        try:
            account_erase(user=guest, reason=AccountErasure.Reason.GUEST_EXPIRED)
            guests += 1
        except oss.StorageUnavailable:
            waiting += 1
    for erasure in AccountErasure.objects.filter(state=AccountErasure.State.DELETING_OBJECTS):
        try:
            erasure_continue(erasure=erasure)
            continued += 1
        except oss.StorageUnavailable as exc:
            logger.warning("Erasure of %s waits: %s", erasure.public_id, exc.message)
            waiting += 1
    return GuestExpiry(guests=guests, continued=continued, waiting=waiting)


def account_export(*, user: User) -> dict[str, Any]:
    """The user's profile, identities and uploads, with short-lived download URLs."""
    if AccountErasure.objects.filter(user=user).exists():
        raise Conflict("This account is being erased.", code="account_erasing")
    uploads = []
    for upload in Upload.objects.filter(owner=user, status=Upload.Status.ACTIVE).order_by("pk"):
        signed = oss.oss_sign_download_url(key=upload.key, filename=upload.filename)
        uploads.append(
            {
                "id": upload.pk,
                "filename": upload.filename,
                "size": upload.size,
                "content_type": upload.content_type,
                "etag": upload.etag,
                "metadata": upload.metadata,
                "created_at": upload.created_at.isoformat(),
                "download_url": signed.url,
                "download_url_expires_at": signed.expires_at.isoformat(),
            }
        )
    return {
        "profile": {
            "public_id": user.public_id,
            "username": user.username,
            "email": user.email,
            "date_joined": user.date_joined.isoformat(),
            "is_guest": user.is_guest,
            "storage_prefix": user_storage_prefix(user=user),
        },
        "identities": [
            {
                "id": identity.pk,
                "provider": identity.provider,
                "subject": identity.subject,
                "email": identity.email,
                "linked_at": identity.created_at.isoformat(),
            }
            for identity in ExternalIdentity.objects.filter(user=user).order_by("pk")
        ],
        "uploads": uploads,
    }


def account_erase_checked(
    *, user: User, password: str, session_id: Any, reason: str = "user"
) -> AccountErasure:
    """The user's own erasure: their password, or a login session (the access token's `sid`)
    started at most ACCOUNT_ERASE_FRESH_SECONDS ago. Refreshing keeps a session's start, so a
    stolen long-lived refresh token alone cannot erase an account."""
    if password:
        if not user.check_password(password):
            raise PermissionDenied("Wrong password.", code="wrong_password")
    else:
        try:
            sid = uuid.UUID(str(session_id))
        except ValueError:
            sid = None
        cutoff = timezone.now() - timedelta(seconds=settings.ACCOUNT_ERASE_FRESH_SECONDS)
        fresh = (
            sid is not None
            and LoginSession.objects.filter(
                pk=sid, user=user, ended_at__isnull=True, created_at__gte=cutoff
            ).exists()
        )
        if not fresh:
            raise PermissionDenied(
                "Confirm with your password, or sign in again and retry within a few minutes.",
                code="reauthentication_required",
            )
    try:
        return account_erase(user=user, reason=reason)
    except oss.StorageUnavailable:
        # The account is already disabled and the erasure recorded; the sweep finishes it.
        return AccountErasure.objects.get(public_id=user.public_id)
