"""STS credentials for end users. (Being built: see issue 2.)"""

from __future__ import annotations

from accounts.models import User


def credentials_forget_user(*, user: User) -> None:
    """Drop every cached credential of the user (called when the user is suspended)."""
    raise NotImplementedError
