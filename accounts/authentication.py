"""simplejwt's access-token authentication, with one answer for a token whose user is gone."""

from __future__ import annotations

from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import InvalidToken

from accounts.models import User

GONE = "The token's account no longer exists or is disabled. Log in again."


class JWTAuthentication(authentication.JWTAuthentication):
    """A deleted or deactivated user's token is 401 ``token_not_valid``, the code an app already
    handles by logging in again (simplejwt says ``user_not_found`` / ``user_inactive``)."""

    def get_user(self, validated_token) -> User:
        try:
            return super().get_user(validated_token)
        except InvalidToken:
            raise
        except AuthenticationFailed as exc:
            raise InvalidToken(GONE) from exc
