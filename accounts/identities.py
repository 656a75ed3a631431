"""Signing in without a password here: provider identities (OpenID Connect) and guests."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ExternalIdentity, User
from accounts.oidc import VerifiedIdentity
from accounts.services import password_set_checked, username_claim_check
from accounts.signals import guest_created, guest_upgraded
from appserver.errors import AccountSuspended, Conflict, NotAuthenticated, NotFound


def _new_username(kind: str) -> str:
    # Never the provider's email or name: usernames are unique, and a provider must not be able
    # to claim (or collide with) an account here by choosing what it asserts.
    return f"{kind}-{secrets.token_hex(8)}"


def _allowed_to_sign_in(user: User) -> User:
    if not user.is_active:
        raise NotAuthenticated("This account is disabled.", code="account_disabled")
    if user.is_suspended:
        raise AccountSuspended()
    return user


def identity_sign_in(*, identity: VerifiedIdentity) -> tuple[User, bool]:
    """The user (provider, sub) belongs to, and whether it was created by this first sign-in."""
    found = (
        ExternalIdentity.objects.select_related("user")
        .filter(provider=identity.provider, subject=identity.subject)
        .first()
    )
    created = found is None
    if found is None:
        try:
            with transaction.atomic():
                user = User(username=_new_username("user"), email="")
                user.set_unusable_password()
                user.save()
                found = ExternalIdentity.objects.create(
                    user=user,
                    provider=identity.provider,
                    subject=identity.subject,
                    email=identity.email if identity.email_verified else "",
                )
        except IntegrityError:
            # Two first sign-ins raced: the other one created the identity; use its user.
            created = False
            found = ExternalIdentity.objects.select_related("user").get(
                provider=identity.provider, subject=identity.subject
            )
    ExternalIdentity.objects.filter(pk=found.pk).update(last_used_at=timezone.now())
    return _allowed_to_sign_in(found.user), created


def _guest_upgrade_locked(user: User) -> None:
    """A guest that gains a lasting way in keeps its uploads and gets the ordinary quotas."""
    if user.is_guest:
        User.objects.filter(pk=user.pk).update(is_guest=False)
        user.is_guest = False
        guest_upgraded.send(sender=User, user=user)


def identity_link(*, user: User, identity: VerifiedIdentity) -> ExternalIdentity:
    """Link a provider identity to a signed-in user (idempotent for the same user)."""
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()
        existing = ExternalIdentity.objects.filter(
            provider=identity.provider, subject=identity.subject
        ).first()
        if existing is not None and existing.user_id != user.pk:
            raise Conflict(
                "This identity already belongs to another account.", code="identity_linked"
            )
        if existing is None:
            try:
                with transaction.atomic():
                    existing = ExternalIdentity.objects.create(
                        user=user,
                        provider=identity.provider,
                        subject=identity.subject,
                        email=identity.email if identity.email_verified else "",
                    )
            except IntegrityError as exc:
                raise Conflict(
                    "This identity already belongs to another account.", code="identity_linked"
                ) from exc
        _guest_upgrade_locked(user)
    return existing


def identity_unlink(*, user: User, identity_id: int) -> None:
    """Remove one of the user's identities, never the last way in."""
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        identity = ExternalIdentity.objects.filter(user=locked, pk=identity_id).first()
        if identity is None:
            raise NotFound("You have no such linked identity.", code="identity_not_found")
        others = ExternalIdentity.objects.filter(user=locked).exclude(pk=identity.pk).count()
        if others == 0 and not locked.has_usable_password():
            raise Conflict(
                "This is your only way to sign in: set a password or link another provider first.",
                code="last_sign_in_method",
            )
        identity.delete()


def guest_create() -> User:
    """A user with no credentials of its own (the tokens are the only way in), small quotas."""
    with transaction.atomic():
        user = User(username=_new_username("guest"), is_guest=True)
        user.set_unusable_password()
        user.save()
        guest_created.send(sender=User, user=user)
    return user


def guest_set_password(*, user: User, username: str, password: str, email: str = "") -> User:
    """Upgrade a guest in place: it keeps its public id, so its prefix and uploads stay."""
    if not user.is_guest:
        raise Conflict("Only a guest account can be upgraded this way.", code="not_a_guest")
    username_claim_check(username=username, exclude_pk=user.pk)
    user.username, user.email = username, email
    password_set_checked(user=user, password=password)
    try:
        with transaction.atomic():
            user.save(update_fields=["username", "email", "password"])
            _guest_upgrade_locked(user)
    except IntegrityError as exc:
        raise Conflict("That username is taken.", code="username_taken") from exc
    return user


def guests_expired(*, now: datetime | None = None) -> list[User]:
    """Guests older than GUEST_TTL_DAYS that never upgraded (the sweep erases them)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.GUEST_TTL_DAYS)
    return list(
        User.objects.filter(is_guest=True, date_joined__lt=cutoff, erasure__isnull=True).order_by(
            "pk"
        )[:500]
    )
