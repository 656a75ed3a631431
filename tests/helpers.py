"""Small helpers for tests that talk to the live server over real HTTP."""

from __future__ import annotations

from rest_framework_simplejwt.tokens import RefreshToken


def bearer(user) -> dict[str, str]:
    """Authorization header with a fresh access token for the user."""
    return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}


# Every field of the credentials response (the SDKs' five plus what phones need for refreshes).
CREDENTIALS_FIELDS = frozenset(
    {
        "StatusCode",
        "AccessKeyId",
        "AccessKeySecret",
        "SecurityToken",
        "Expiration",
        "Bucket",
        "Region",
        "Endpoint",
        "Prefix",
        "Scope",
        "RefreshAfter",
        "ServerTime",
    }
)
