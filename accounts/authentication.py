"""simplejwt's access-token authentication, with one answer for a token whose user is gone, and
the token epoch and ended sessions (accounts/token_state.py) checked on every request."""

from __future__ import annotations

import contextlib
import uuid

from django.core.cache import cache
from django.db.models import Exists, OuterRef
from redis.exceptions import RedisError
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts.models import LoginSession, User
from accounts.token_state import (
    CLAIMS,
    EPOCH_CLAIM,
    session_key,
    state_key,
    stateless_enabled,
)

GONE = "The token's account no longer exists or is disabled. Log in again."
REVOKED = "The token was revoked (logout, password or account change). Refresh or log in again."


def _session_id(validated_token) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(validated_token["sid"]))
    except (KeyError, ValueError):
        return None


class JWTAuthentication(authentication.JWTAuthentication):
    """One SELECT per request: the user row, and whether the token's login session has ended.

    A deleted or deactivated user's token is 401 ``token_not_valid``, the code an app already
    handles by logging in again (simplejwt says ``user_not_found`` / ``user_inactive``); so is a
    token older than the user's token epoch, or of an ended session. A suspended user's token is
    let through to the permission classes, which answer with the suspension (403
    ``account_suspended``, or 401 on the account endpoints)."""

    def get_user(self, validated_token) -> User:
        try:
            user_id = validated_token[jwt_settings.USER_ID_CLAIM]
        except KeyError:
            raise InvalidToken("Token contained no recognizable user identification") from None
        users = User.objects.filter(**{jwt_settings.USER_ID_FIELD: user_id})
        session_id = _session_id(validated_token)
        if session_id is not None:
            ended = LoginSession.objects.filter(
                pk=session_id, user=OuterRef("pk"), ended_at__isnull=False
            )
            users = users.annotate(session_ended=Exists(ended))
        user = next(iter(users), None)
        if user is None or not user.is_active:
            raise InvalidToken(GONE)
        if user.is_suspended:
            return user
        # Tokens minted before epochs existed carry none: epoch 0, every user's first.
        if validated_token.get(EPOCH_CLAIM, 0) != user.token_epoch or getattr(
            user, "session_ended", False
        ):
            raise InvalidToken(REVOKED)
        return user


class StatelessJWTAuthentication(JWTAuthentication):
    """For the hot endpoints: no database query while Redis holds the token's epoch.

    One Redis round trip reads the user's epoch and the mark of an ended session. When the
    epoch is the token's, the user is built from the token's claims (a User whose other fields
    are deferred: read from the database if a view ever touches one). The epoch is incremented,
    Redis told before the database changes, whenever any of those claims or the user's standing
    changes, so a token whose epoch Redis holds describes the user as they are
    (accounts/token_state.py). Anything else goes to JWTAuthentication's database check, Redis
    unreachable included: the database stays the one that decides."""

    def get_user(self, validated_token) -> User:
        if not stateless_enabled():
            return super().get_user(validated_token)
        try:
            user_id = int(validated_token[jwt_settings.USER_ID_CLAIM])
            epoch = validated_token[EPOCH_CLAIM]
            claims = {attr: validated_token[claim] for claim, attr in CLAIMS.items()}
        except (KeyError, TypeError, ValueError):
            return super().get_user(validated_token)
        key = state_key(user_id)
        session_id = _session_id(validated_token)
        keys = [key] if session_id is None else [key, session_key(user_id, session_id)]
        try:
            found = cache.get_many(keys)
        except RedisError:
            return super().get_user(validated_token)
        if len(keys) > 1 and keys[1] in found:
            raise InvalidToken(REVOKED)
        current = found.get(key)
        if type(current) is int and current == epoch:
            known = {
                "id": user_id,
                "is_active": True,
                "is_suspended": False,
                "token_epoch": epoch,
                **claims,
            }
            return User.from_db(
                "default",
                list(known),
                [known[f.attname] for f in User._meta.concrete_fields if f.attname in known],
            )
        user = super().get_user(validated_token)
        if current is None and not user.is_suspended:
            # No copy yet (or Redis lost it): put the database's, unless a change has put its
            # marker meanwhile (SET NX). Only of a user in good standing (see HELD).
            with contextlib.suppress(RedisError):
                cache.add(key, user.token_epoch, None)
        return user
