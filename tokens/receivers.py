"""What tokens does when accounts announces an event (connected in TokensConfig.ready)."""

from __future__ import annotations

from django.dispatch import receiver

from accounts.models import User
from accounts.signals import user_suspended
from tokens.services import credentials_forget_user


@receiver(user_suspended, dispatch_uid="tokens.forget_credentials_of_suspended_user")
def forget_credentials_of_suspended_user(sender, *, user: User, **kwargs) -> None:
    credentials_forget_user(user=user)
