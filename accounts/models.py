from __future__ import annotations

import secrets

from django.contrib.auth.models import AbstractUser
from django.db import models


def new_public_id() -> str:
    # 32 lowercase hex characters (128 bits): unguessable, and safe in OSS keys and RAM
    # resource ARNs. Never derived from the username, so renaming a user moves nothing.
    return secrets.token_hex(16)


class User(AbstractUser):
    """An end user of the mobile apps (and staff, who use the admin)."""

    public_id = models.CharField(
        max_length=32,
        unique=True,
        default=new_public_id,
        editable=False,
        help_text="Stable, unguessable id used in storage paths (users/<public_id>/).",
    )
    is_suspended = models.BooleanField(
        default=False,
        help_text="Suspended users get no credentials or tickets and their callbacks are refused.",
    )
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspension_reason = models.CharField(max_length=255, blank=True)
    credentials_epoch = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Incremented when the user's cached credentials are dropped (suspension): "
        "every worker's local copy of older ones becomes unusable.",
    )

    class Meta:
        db_table = "accounts_user"

    def __str__(self) -> str:
        return self.username
