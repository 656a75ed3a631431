from __future__ import annotations

import re

from django.utils import timezone
from rest_framework import serializers

from accounts.models import LoginSession, User
from accounts.selectors import user_storage_prefix
from accounts.usernames import username_normalize


class LoginInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class RefreshInputSerializer(serializers.Serializer):
    refresh = serializers.CharField()


_USERNAME = r"^[\w.@+-]{3,150}$"
_USERNAME_RULE = "3-150 letters, digits and @/./+/-/_ only."


class RegisterInputSerializer(serializers.Serializer):
    username = serializers.RegexField(_USERNAME, error_messages={"invalid": _USERNAME_RULE})
    password = serializers.CharField(max_length=128, trim_whitespace=False)
    email = serializers.EmailField(required=False, allow_blank=True, default="")

    def validate_username(self, value: str) -> str:
        # Stored NFKC-normalised: a fullwidth "demo" registers as "demo" (and is then taken).
        # The rule is checked again because normalising can lengthen a name.
        normalized = username_normalize(value)
        if not re.match(_USERNAME, normalized):
            raise serializers.ValidationError(_USERNAME_RULE)
        return normalized


class UserOutputSerializer(serializers.ModelSerializer):
    storage_prefix = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "public_id",
            "storage_prefix",
            "is_suspended",
            "is_guest",
            "date_joined",
        ]

    def get_storage_prefix(self, user: User) -> str:
        return user_storage_prefix(user=user)


def user_output(user: User) -> dict:
    """UserOutputSerializer(user).data, built directly for GET /api/auth/me/, which apps call on
    every launch (tests/accounts hold the two equal)."""
    joined = user.date_joined.astimezone(timezone.get_current_timezone()).isoformat()
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "public_id": user.public_id,
        "storage_prefix": user_storage_prefix(user=user),
        "is_suspended": user.is_suspended,
        "is_guest": user.is_guest,
        "date_joined": joined[:-6] + "Z" if joined.endswith("+00:00") else joined,
    }


class RegisterOutputSerializer(serializers.Serializer):
    user = UserOutputSerializer()
    access = serializers.CharField()
    refresh = serializers.CharField()


class SessionOutputSerializer(serializers.ModelSerializer):
    current = serializers.SerializerMethodField(help_text="The session of this access token.")

    class Meta:
        model = LoginSession
        fields = [
            "id",
            "created_at",
            "last_used_at",
            "expires_at",
            "user_agent",
            "ip_address",
            "current",
        ]

    def get_current(self, session: LoginSession) -> bool:
        return session.id == self.context.get("current")


class SessionsRevokedSerializer(serializers.Serializer):
    revoked = serializers.IntegerField(help_text="How many other sessions were ended.")


class OidcInputSerializer(serializers.Serializer):
    provider = serializers.CharField(max_length=64)
    id_token = serializers.CharField(max_length=16384, trim_whitespace=False)
    nonce = serializers.CharField(max_length=512, required=False, trim_whitespace=False)


class IdentityOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    provider = serializers.CharField()
    email = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)


class SignInOutputSerializer(RegisterOutputSerializer):
    created = serializers.BooleanField()


class EraseInputSerializer(serializers.Serializer):
    password = serializers.CharField(
        max_length=128, required=False, allow_blank=True, trim_whitespace=False
    )


class ErasureOutputSerializer(serializers.Serializer):
    public_id = serializers.CharField()
    state = serializers.CharField()
    objects_deleted = serializers.IntegerField()
    uploads_deleted = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
