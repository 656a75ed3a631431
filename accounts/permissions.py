from __future__ import annotations

from rest_framework.permissions import BasePermission

from appserver.errors import AccountSuspended


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
