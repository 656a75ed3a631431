from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from accounts.signals import user_suspended
from appserver.errors import Conflict, InvalidInput


def user_register(*, username: str, password: str, email: str = "") -> User:
    user = User(username=username, email=email)
    try:
        validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise InvalidInput(
            "The password is too weak.", code="weak_password", fields={"password": exc.messages}
        ) from exc
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        raise Conflict("That username is taken.", code="username_taken") from exc
    return user


def user_suspend(*, user: User, reason: str = "") -> User:
    """Suspend at once: no more credentials or tickets, and the user's late upload callbacks are
    refused (the callback checks the owner's state). Sends `user_suspended` once, on which the
    apps above drop what the user could still be handed (tokens: the cached credentials)."""
    User.objects.filter(pk=user.pk).update(
        is_suspended=True, suspended_at=timezone.now(), suspension_reason=reason[:255]
    )
    user.refresh_from_db(fields=["is_suspended", "suspended_at", "suspension_reason"])
    user_suspended.send(sender=User, user=user)
    return user


def user_unsuspend(*, user: User) -> User:
    User.objects.filter(pk=user.pk).update(
        is_suspended=False, suspended_at=None, suspension_reason=""
    )
    user.refresh_from_db(fields=["is_suspended", "suspended_at", "suspension_reason"])
    return user
