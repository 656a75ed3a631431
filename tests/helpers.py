"""Small helpers for tests that talk to the live server over real HTTP."""

from __future__ import annotations

from rest_framework_simplejwt.tokens import RefreshToken


def bearer(user) -> dict[str, str]:
    """Authorization header with a fresh access token for the user."""
    return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}
