from __future__ import annotations

from django.conf import settings
from django.db import models


class CredentialGrant(models.Model):
    """One set of STS credentials the server obtained (one AssumeRole call), and its use.

    Never holds the AccessKeySecret or the SecurityToken: the AccessKeyId is enough to find a
    grant from OSS access logs or ActionTrail, and a leaked ledger grants nothing.
    """

    # Kept when the user is deleted: the ledger is an audit trail (the prefix names the user).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="credential_grants",
    )
    scope = models.CharField(max_length=64)
    bucket = models.CharField(max_length=63)
    prefix = models.CharField(max_length=255, blank=True, help_text="Empty for bucket-wide scopes.")
    policy_sha256 = models.CharField(max_length=64)
    access_key_id = models.CharField(max_length=128, db_index=True)
    expiration = models.DateTimeField()
    sts_request_id = models.CharField(max_length=64, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # How many responses carried these credentials (the first included); bumped with one F()
    # UPDATE per cached hand-out.
    times_served = models.PositiveIntegerField(default=1)
    last_served_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # "credentials issued per day" (reports) and the admin's date filter.
            models.Index(fields=["created_at"], name="tokens_grant_created_idx"),
            models.Index(fields=["user", "-created_at"], name="tokens_grant_user_created_idx"),
            models.Index(fields=["scope", "created_at"], name="tokens_grant_scope_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.access_key_id} ({self.scope})"
