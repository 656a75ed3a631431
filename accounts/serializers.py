from __future__ import annotations

from rest_framework import serializers

from accounts.models import User
from accounts.selectors import user_storage_prefix


class LoginInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class RefreshInputSerializer(serializers.Serializer):
    refresh = serializers.CharField()


class RegisterInputSerializer(serializers.Serializer):
    username = serializers.RegexField(
        r"^[\w.@+-]{3,150}$",
        error_messages={"invalid": "3-150 letters, digits and @/./+/-/_ only."},
    )
    password = serializers.CharField(max_length=128, trim_whitespace=False)
    email = serializers.EmailField(required=False, allow_blank=True, default="")


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
            "date_joined",
        ]

    def get_storage_prefix(self, user: User) -> str:
        return user_storage_prefix(user=user)


class RegisterOutputSerializer(serializers.Serializer):
    user = UserOutputSerializer()
    access = serializers.CharField()
    refresh = serializers.CharField()
