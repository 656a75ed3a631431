"""What tokens does when accounts announces an event (connected in TokensConfig.ready)."""

from __future__ import annotations

from django.dispatch import receiver

from accounts.models import User
from accounts.signals import user_erasing, user_suspended
from tokens.models import CredentialGrant
from tokens.services import credentials_forget_user


@receiver(user_suspended, dispatch_uid="tokens.forget_credentials_of_suspended_user")
def forget_credentials_of_suspended_user(sender, *, user: User, **kwargs) -> None:
    credentials_forget_user(user=user)


@receiver(user_erasing, dispatch_uid="tokens.anonymise_ledger_of_erased_user")
def anonymise_ledger_of_erased_user(sender, *, user: User, **kwargs) -> None:
    # The ledger stays (an audit trail with no secrets), without the person in it.
    CredentialGrant.objects.filter(user=user).update(client_ip=None, user_agent="")
