from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import LoginSession, User


def user_storage_prefix(*, user: User) -> str:
    """The user's own folder in the bucket, e.g. ``users/3f2a…/``.

    Built only from the server's setting and the user's public id: nothing from the request can
    widen it. Every credential policy, ticket key and listing is confined to it.
    """
    prefix = settings.STORAGE_PREFIX_TEMPLATE.format(user_public_id=user.public_id)
    if not prefix.endswith("/") or user.public_id not in prefix or "*" in prefix or "?" in prefix:
        raise ValueError(
            "STORAGE_PREFIX_TEMPLATE must contain {user_public_id}, end with '/' and hold no "
            "wildcards."
        )
    return prefix


def session_list(*, user: User) -> QuerySet[LoginSession]:
    """The user's own sessions that can still refresh, most recently used first."""
    return LoginSession.objects.filter(
        user=user, ended_at__isnull=True, expires_at__gt=timezone.now()
    ).order_by("-last_used_at")
