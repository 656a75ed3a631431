from __future__ import annotations

import secrets
import uuid

from django.contrib.auth.hashers import is_password_usable
from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.db.models.lookups import Exact
from django.utils import timezone

from accounts.usernames import username_normalize, username_skeleton


def new_public_id() -> str:
    # 32 lowercase hex characters (128 bits): unguessable, and safe in OSS keys and RAM
    # resource ARNs. Never derived from the username, so renaming a user moves nothing.
    return secrets.token_hex(16)


class AppUserManager(UserManager):
    def get_by_natural_key(self, username: str) -> User:
        # Login (ModelBackend, the admin) and createsuperuser's "taken" check: the same
        # normalisation and case rule as the unique index on LOWER(username).
        return self.get(Exact(Lower("username"), Lower(models.Value(username_normalize(username)))))

    def _create_user(self, username, email, password, **extra_fields):
        # createsuperuser and create_user: refused look-alikes surface as ValidationError, which
        # createsuperuser reports as a message instead of a traceback.
        username_check_available(username=self.model.normalize_username(username))
        return super()._create_user(username, email, password, **extra_fields)


def username_check_available(*, username: str, exclude_pk: int | None = None) -> None:
    """Raise ValidationError when the name is taken by another account, ignoring case and
    look-alike characters (see accounts/usernames.py)."""
    clashes = User.objects.filter(
        models.Q(username_skeleton=username_skeleton(username))
        | Exact(Lower("username"), Lower(models.Value(username)))
    )
    if exclude_pk is not None:
        clashes = clashes.exclude(pk=exclude_pk)
    if clashes.exists():
        raise ValidationError(
            {"username": "That username is taken, or looks too much like one that is."},
            code="username_taken",
        )


class UsernameSkeletonField(models.TextField):
    """Derived from the username whenever a row is written by save() or bulk_create (as
    auto_now is), so the unique index on it holds whichever path creates a user. A
    QuerySet.update() of usernames bypasses it: rename through save()."""

    def pre_save(self, model_instance, add: bool) -> str:
        value = username_skeleton(model_instance.username)
        setattr(model_instance, self.attname, value)
        return value


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
    token_epoch = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Incremented when the user's access tokens must stop working (suspension, "
        "deactivation, password or staff change, a session ended): see accounts/token_state.py.",
    )

    username_skeleton = UsernameSkeletonField(
        unique=True,
        editable=False,
        help_text="UTS #39 skeleton of the case-folded username: look-alike names share it.",
    )

    objects = AppUserManager()

    is_guest = models.BooleanField(
        default=False,
        help_text="Signed in as a guest: small quotas, removed after GUEST_TTL_DAYS unless it "
        "links a provider or sets a password.",
    )

    class Meta:
        db_table = "accounts_user"
        constraints = [
            models.UniqueConstraint(
                Lower("username"),
                name="accounts_user_username_lower_unique",
                violation_error_message="That username is taken.",
            ),
        ]

    def __str__(self) -> str:
        return self.username

    def clean(self) -> None:
        # The admin's add and change forms: NFKC (AbstractBaseUser.clean), then the same
        # availability rule as registration.
        super().clean()
        if self.username:  # else the field's own error is already reported
            username_check_available(username=self.username, exclude_pk=self.pk)

    def save(self, *args, **kwargs) -> None:
        # A rename limited to some fields still rewrites the skeleton: the unique index on it
        # is the last word when two writers race.
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "username" in update_fields:
            kwargs["update_fields"] = {*update_fields, "username_skeleton"}
        if self._tokens_must_end(update_fields):
            from accounts.token_state import tokens_revoked

            with tokens_revoked(user=self):
                super().save(*args, **kwargs)
        else:
            super().save(*args, **kwargs)

    def _tokens_must_end(self, update_fields) -> bool:
        """Whether this save changes what a token says of the user or lets it keep working:
        deactivation, suspension (other than by accounts.services), staff flags, a password that
        replaces a usable one (a guest's first password ends nothing). Costs a SELECT only when
        one of those fields is written."""
        if self._state.adding or self.pk is None:
            return False
        # A partly loaded instance (the stateless authentication's) writes only its loaded fields.
        written = {
            "is_active",
            "is_suspended",
            "is_staff",
            "is_superuser",
            "password",
        } - self.get_deferred_fields()
        if update_fields is not None:
            written &= set(update_fields)
        if not written:
            return False
        stored = User.objects.filter(pk=self.pk).values(*written).first()
        if stored is None:
            return False
        if any(stored[f] != getattr(self, f) for f in written - {"password"}):
            return True
        if "password" not in written:
            return False
        old = stored["password"]
        return old != self.password and bool(old) and is_password_usable(old)


class LoginSession(models.Model):
    """One login on one device: the family of refresh tokens that rotation derives from it.

    Each refresh token carries the session's id (``sid``) and its own ``jti``; only the token
    whose jti is ``refresh_jti`` may be exchanged, and the exchange is one compare-and-set
    UPDATE, so of concurrent refreshes with one token exactly one wins. Presenting any other
    token of the family is reuse (the token was stolen, or the app raced itself) and ends the
    session, so the newest token dies too.
    """

    class EndReason(models.TextChoices):
        LOGOUT = "logout", "Logged out"
        REVOKED = "revoked", "Ended by the user or staff"
        REUSE = "reuse", "An already used refresh token was presented"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="login_sessions")
    refresh_jti = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    user_agent = models.CharField(max_length=255, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=EndReason.choices, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-last_used_at"], name="accounts_session_user")]

    def __str__(self) -> str:
        return f"{self.user} since {self.created_at:%Y-%m-%d %H:%M}"


class ExternalIdentity(models.Model):
    """A user's account at an OpenID Connect provider: (provider, sub) belongs to one user.

    `subject` is the provider's stable `sub`; nothing here names storage (the user's prefix
    comes from its server-generated public_id)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="identities")
    provider = models.CharField(max_length=64)
    subject = models.CharField(max_length=255)
    email = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "external identities"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "subject"], name="externalidentity_provider_subject_uniq"
            ),
        ]
        indexes = [models.Index(fields=["user", "provider"], name="externalidentity_user_idx")]

    def __str__(self) -> str:
        return f"{self.provider}:{self.subject}"


class AccountErasure(models.Model):
    """An account being (or having been) erased. The row outlives the user as its receipt:
    it holds the public id and counts, never a name, address or provider subject.

    `state` lets an interrupted erasure be continued: objects are deleted page by page from
    the prefix, then the rows go and the state becomes done in one transaction."""

    class State(models.TextChoices):
        DELETING_OBJECTS = "deleting_objects", "Deleting objects"
        DONE = "done", "Done"

    class Reason(models.TextChoices):
        USER = "user", "Asked by the user"
        STAFF = "staff", "Erased by staff"
        GUEST_EXPIRED = "guest_expired", "Guest never upgraded"

    user = models.OneToOneField(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="erasure"
    )
    public_id = models.CharField(max_length=32, unique=True)
    prefix = models.CharField(max_length=255)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.DELETING_OBJECTS)
    objects_deleted = models.IntegerField(default=0)
    bytes_deleted = models.BigIntegerField(default=0)
    uploads_deleted = models.IntegerField(default=0)
    identities_deleted = models.IntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["started_at"],
                name="erasure_unfinished_idx",
                condition=models.Q(state="deleting_objects"),
            )
        ]

    def __str__(self) -> str:
        return f"erasure of {self.public_id} ({self.state})"
