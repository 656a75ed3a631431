from __future__ import annotations

from rest_framework.permissions import BasePermission

from appserver.errors import AccountSuspended, TokenNotValid


class IsActiveAccount(BasePermission):
    """Authenticated and not suspended. Suspension is re-read from the database on every request
    (the JWT was issued before the suspension), so it takes effect at once."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if user.is_suspended:
            raise AccountSuspended()
        return True


class IsAccountHolder(BasePermission):
    """For the account endpoints (me, sessions): a suspended user's access token is refused
    there like their refresh token, 401 ``token_not_valid`` (elsewhere suspension is the 403
    of IsActiveAccount)."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if user.is_suspended:
            raise TokenNotValid()
        return True
