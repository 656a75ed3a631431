from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import LoginSession, User, username_check_available
from accounts.signals import user_suspended
from accounts.token_state import sessions_ended_mark, token_claims, tokens_revoked
from appserver.errors import Conflict, InvalidInput, TokenNotValid
from events.models import EventType
from events.services import event_record

_TAKEN = "That username is taken, or looks too much like one that is."


def user_register(*, username: str, password: str, email: str = "") -> User:
    """Create an account. The username arrives NFKC-normalised (the serializer); one that
    equals an existing one ignoring case, or looks like it (accounts/usernames.py), is 409."""
    username_claim_check(username=username)
    user = User(username=username, email=email)
    password_set_checked(user=user, password=password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        # A concurrent registration of the same or a look-alike name won the unique index.
        raise Conflict(_TAKEN, code="username_taken") from exc
    return user


def username_claim_check(*, username: str, exclude_pk: int | None = None) -> None:
    """409 `username_taken` when `username` equals an existing one ignoring case, or looks like
    it (accounts/usernames.py); the unique indexes still decide a race."""
    try:
        username_check_available(username=username, exclude_pk=exclude_pk)
    except DjangoValidationError as exc:
        raise Conflict(_TAKEN, code="username_taken") from exc


def password_set_checked(*, user: User, password: str) -> None:
    """Set the password (not saved) if the validators accept it, else 400 `weak_password`."""
    try:
        validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise InvalidInput(
            "The password is too weak.", code="weak_password", fields={"password": exc.messages}
        ) from exc
    user.set_password(password)


def user_suspend(*, user: User, reason: str = "") -> User:
    """Suspend at once: no more credentials or tickets, and the user's late upload callbacks are
    refused (the callback checks the owner's state). Every worker refuses the user's tokens from
    the moment this starts (the token epoch, accounts/token_state.py). Sends `user_suspended`
    once, on which the apps above drop what the user could still be handed (tokens: the cached
    credentials)."""
    with transaction.atomic(), tokens_revoked(user=user):
        # Only a change of state is an event: suspending a suspended user again writes none.
        was_suspended = (
            User.objects.select_for_update()
            .filter(pk=user.pk)
            .values_list("is_suspended", flat=True)
            .first()
        )
        User.objects.filter(pk=user.pk).update(
            is_suspended=True, suspended_at=timezone.now(), suspension_reason=reason[:255]
        )
        if not was_suspended:
            event_record(
                type=EventType.USER_SUSPENDED,
                user_public_id=user.public_id,
                data={"reason": reason[:255]},
            )
    user.refresh_from_db(fields=["is_suspended", "suspended_at", "suspension_reason"])
    user_suspended.send(sender=User, user=user)
    return user


def user_unsuspend(*, user: User) -> User:
    """Tokens from before the suspension stay void (the epoch moved on); new logins work."""
    with transaction.atomic(), tokens_revoked(user=user):
        User.objects.filter(pk=user.pk).update(
            is_suspended=False, suspended_at=None, suspension_reason=""
        )
    user.refresh_from_db(fields=["is_suspended", "suspended_at", "suspension_reason"])
    return user


# --- Login sessions: refresh-token families (accounts.models.LoginSession) -------------------


def _refresh_claims(raw: str) -> tuple[uuid.UUID, str, object]:
    """(session id, jti, user id) of a signed, unexpired refresh token that names a session."""
    try:
        token = RefreshToken(raw)
        session_id = uuid.UUID(str(token["sid"]))
        return session_id, str(token[jwt_settings.JTI_CLAIM]), token[jwt_settings.USER_ID_CLAIM]
    except (TokenError, KeyError, ValueError) as exc:
        raise TokenNotValid() from exc


def _token_user(user_id: object) -> User:
    """The token's user, if they may still hold tokens: deleted, deactivated and suspended users'
    tokens are all simply invalid."""
    user = User.objects.filter(pk=user_id).first() if isinstance(user_id, int | str) else None
    if user is None or not user.is_active or user.is_suspended:
        raise TokenNotValid()
    return user


def _new_refresh(*, user: User, session_id: uuid.UUID) -> RefreshToken:
    refresh = RefreshToken.for_user(user)
    refresh["sid"] = str(session_id)
    # Copied into its access token: what the hot endpoints trust instead of the user row.
    for claim, value in token_claims(user).items():
        refresh[claim] = value
    return refresh


def _pair(refresh: RefreshToken) -> dict[str, str]:
    # The access token copies the sid claim, so the sessions list can mark the caller's own.
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def _expiry(refresh: RefreshToken) -> datetime:
    return datetime.fromtimestamp(refresh["exp"], tz=UTC)


def session_start(*, user: User, user_agent: str = "", ip_address: str | None = None) -> dict:
    """A new login: a session and its first access + refresh pair."""
    session_id = uuid.uuid4()
    refresh = _new_refresh(user=user, session_id=session_id)
    LoginSession.objects.create(
        id=session_id,
        user=user,
        refresh_jti=refresh[jwt_settings.JTI_CLAIM],
        expires_at=_expiry(refresh),
        user_agent=user_agent[:255],
        ip_address=ip_address,
    )
    return _pair(refresh)


def _session_end_on_reuse(*, user: User, session_id: uuid.UUID) -> None:
    sessions_ended_mark(user_pk=user.pk, session_ids=[session_id])
    LoginSession.objects.filter(pk=session_id, user=user, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=LoginSession.EndReason.REUSE
    )


def session_refresh(*, refresh: str, user_agent: str = "", ip_address: str | None = None) -> dict:
    """Exchange the session's current refresh token for a new pair, exactly once.

    The exchange is a compare-and-set on the session's current jti: of concurrent requests with
    one token, one UPDATE matches and the others match nothing (PostgreSQL re-checks the row
    after the winner commits). A token that does not match is a reused one: the session ends,
    so whoever holds the newest token is logged out as well.
    """
    session_id, jti, user_id = _refresh_claims(refresh)
    user = _token_user(user_id)
    new = _new_refresh(user=user, session_id=session_id)
    exchanged = LoginSession.objects.filter(
        pk=session_id, user=user, refresh_jti=jti, ended_at__isnull=True
    ).update(
        refresh_jti=new[jwt_settings.JTI_CLAIM],
        last_used_at=timezone.now(),
        expires_at=_expiry(new),
        user_agent=user_agent[:255],
        ip_address=ip_address,
    )
    if not exchanged:
        _session_end_on_reuse(user=user, session_id=session_id)
        raise TokenNotValid()
    return _pair(new)


def session_logout(*, refresh: str) -> None:
    """End the session of the current refresh token (an older one counts as reuse)."""
    session_id, jti, user_id = _refresh_claims(refresh)
    user = _token_user(user_id)
    # Marked first: the session's access tokens are refused everywhere once this returns
    # (accounts/token_state.py); a token that turns out not to be current ends it anyway.
    sessions_ended_mark(user_pk=user.pk, session_ids=[session_id])
    ended = LoginSession.objects.filter(
        pk=session_id, user=user, refresh_jti=jti, ended_at__isnull=True
    ).update(ended_at=timezone.now(), end_reason=LoginSession.EndReason.LOGOUT)
    if not ended:
        _session_end_on_reuse(user=user, session_id=session_id)
        raise TokenNotValid()


def session_revoke(*, user: User, session_id: uuid.UUID) -> bool:
    """End one of the user's own sessions; False if they have no such active session."""
    active = LoginSession.objects.filter(pk=session_id, user=user, ended_at__isnull=True)
    if not active.exists():
        return False
    sessions_ended_mark(user_pk=user.pk, session_ids=[session_id])
    return bool(active.update(ended_at=timezone.now(), end_reason=LoginSession.EndReason.REVOKED))


def session_revoke_others(*, user: User, keep: uuid.UUID | None) -> int:
    """End every active session of the user except `keep` (the caller's own); how many ended."""
    active = LoginSession.objects.filter(user=user, ended_at__isnull=True).exclude(pk=keep)
    # The ones that exist now (a login meanwhile is not "another" session yet).
    ids = list(active.values_list("pk", flat=True))
    sessions_ended_mark(user_pk=user.pk, session_ids=ids)
    return active.filter(pk__in=ids).update(
        ended_at=timezone.now(), end_reason=LoginSession.EndReason.REVOKED
    )
