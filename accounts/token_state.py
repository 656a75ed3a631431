"""The per-user token epoch: what lets the hot endpoints trust an access token without reading
the user row, and what ends every access token of a user at once.

Every access and refresh token carries the user's ``token_epoch`` (claim ``ae``) and what the
hot paths need of the user (public id, staff flags, credentials epoch: ``CLAIMS``). The epoch is
incremented in the database whenever tokens issued before must stop working: suspension,
deactivation, deletion, a password change, a change of the staff flags. The refresh reads the
database and mints the new epoch. The end of one login session (logout, revocation, a reused
refresh token) ends that session's access tokens only: they carry its id (``sid``), and Redis
holds a mark of each ended session for as long as its access tokens can live
(``sessions_ended_mark``, written before the database says ended); the database check reads the
session's row.

Redis holds a copy of each user's epoch (``state_key``), shared by every worker and instance.
A request on a hot path (accounts.authentication.StatelessJWTAuthentication) is served from its
token's claims only when Redis holds exactly the token's epoch; anything else (no copy, another
epoch, a change in progress, Redis unreachable) goes to the database, which decides as before.
The order of writes keeps the copy from ever being ahead of the truth:

1. before the change, Redis gets a marker (``CHANGING``) that equals no epoch: from that moment
   every request of the user goes to the database, on every worker;
2. the change and the incremented epoch are written to the database;
3. after the commit, Redis gets the new epoch, or ``HELD`` for a suspended or deactivated user
   (no token of theirs is ever served from its claims, whatever epoch it carries).

A request that read the database before step 2 may put the old epoch back only where Redis has
no value at all (``cache.add``, SET NX), and after step 1 it always has one. The marker expires
after ``CHANGING_SECONDS`` so that a writer that died between the steps leaves no user on the
slow path for good: the copy is then rebuilt from the database. A deleted user's key holds
``GONE`` for as long as any of their access tokens can live. If Redis cannot take the marker,
the change is refused (the fault surfaces as a 503): nothing is changed that Redis might not
know about.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from appserver.cache import user_tag

if TYPE_CHECKING:
    from accounts.models import User

EPOCH_CLAIM = "ae"
# claim -> User attribute; with the user id and EPOCH_CLAIM, all a hot path reads of the user.
CLAIMS = {
    "pid": "public_id",
    "stf": "is_staff",
    "su": "is_superuser",
    "ce": "credentials_epoch",
}
CHANGING = "changing"
HELD = "held"
CHANGING_SECONDS = 60
GONE = "gone"


def state_key(user_pk: int) -> str:
    return f"token-epoch:{user_tag(user_pk)}"


def session_key(user_pk: int, session_id) -> str:
    """In the user's hash slot, beside state_key: the hot path reads both with one MGET."""
    return f"token-session-ended:{user_tag(user_pk)}:{session_id}"


def _access_lifetime_seconds() -> int:
    leeway = jwt_settings.LEEWAY
    leeway = leeway.total_seconds() if isinstance(leeway, timedelta) else leeway
    return int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds() + leeway) + CHANGING_SECONDS


def sessions_ended_mark(*, user_pk: int, session_ids) -> None:
    """Before sessions end in the database: their access tokens are refused on every worker
    from now on, for as long as any can still be presented (they carry the session's id).
    Raises RedisError (a 503) rather than end a session Redis does not know about."""
    if stateless_enabled() and session_ids:
        marks = {session_key(user_pk, sid): 1 for sid in session_ids}
        cache.set_many(marks, _access_lifetime_seconds())


def stateless_enabled() -> bool:
    """Only with a cache every process shares: a local-memory copy would not see the changes
    other processes make."""
    return settings.AUTH_STATELESS and hasattr(cache, "incr_window")


def token_claims(user: User) -> dict:
    return {EPOCH_CLAIM: user.token_epoch, **{c: getattr(user, a) for c, a in CLAIMS.items()}}


@contextmanager
def tokens_revoked(*, user: User) -> Iterator[None]:
    """Around a change that must end the user's tokens (steps 1-3 above). On return the user's
    row and `user.token_epoch` hold the new epoch; Redis gets it when the transaction commits."""
    key = state_key(user.pk)
    if stateless_enabled():
        cache.set(key, CHANGING, CHANGING_SECONDS)
    yield
    from accounts.models import User

    User.objects.filter(pk=user.pk).update(token_epoch=F("token_epoch") + 1)
    row = User.objects.filter(pk=user.pk).values("token_epoch", "is_active", "is_suspended").first()
    if row is None:  # deleted meanwhile: user_tokens_gone has marked it
        return
    user.token_epoch = epoch = row["token_epoch"]
    if stateless_enabled():
        # Only a user in good standing has an epoch in Redis: a suspended or deactivated one's
        # every request goes to the database, whatever token it presents.
        value = epoch if row["is_active"] and not row["is_suspended"] else HELD
        transaction.on_commit(lambda: cache.set(key, value, None))


def user_tokens_revoke(*, user: User) -> None:
    """End every access token of the user now (their sessions can still refresh)."""
    with tokens_revoked(user=user):
        pass


def user_tokens_gone(*, user_pk: int) -> None:
    """The user is being deleted: no copy of their epoch may be put back while any of their
    tokens can still be presented."""
    if stateless_enabled():
        cache.set(state_key(user_pk), GONE, _access_lifetime_seconds())


def user_deleted_tokens_gone(sender, *, instance: User, **kwargs) -> None:
    """post_delete of a User, inside the deleting transaction (a Redis failure undoes it)."""
    user_tokens_gone(user_pk=instance.pk)
