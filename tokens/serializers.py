from __future__ import annotations

from rest_framework import serializers

from tokens.services import IssuedCredentials

EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _utc(value) -> str:
    return value.strftime(EXPIRATION_FORMAT)


class CredentialsOutputSerializer(serializers.Serializer):
    """The body the official Android/iOS auth providers parse, plus what phones need to refresh
    well (wire section 5). Field names are the SDKs', hence PascalCase."""

    StatusCode = serializers.IntegerField(help_text="Always 200 on success (the SDKs check it).")
    AccessKeyId = serializers.CharField()
    AccessKeySecret = serializers.CharField()
    SecurityToken = serializers.CharField()
    Expiration = serializers.CharField(help_text="UTC, YYYY-MM-DDTHH:MM:SSZ.")
    Bucket = serializers.CharField()
    Region = serializers.CharField(
        help_text=(
            'Region id as oss2 and the Android/iOS SDKs take it for V4 signing ("cn-hangzhou"); '
            'ali-oss (JavaScript) wants it with the "oss-" prefix ("oss-cn-hangzhou").'
        )
    )
    Endpoint = serializers.CharField()
    Prefix = serializers.CharField(
        help_text='Every key must start with this ("" for staff bucket-wide scopes).'
    )
    Scope = serializers.CharField()
    RefreshAfter = serializers.CharField(
        help_text="UTC; ask again after this: the server then hands out fresh credentials."
    )
    ServerTime = serializers.CharField(help_text="UTC; compare with the phone's clock.")

    @staticmethod
    def from_issued(issued: IssuedCredentials) -> dict:
        return {
            "StatusCode": 200,
            "AccessKeyId": issued.access_key_id,
            "AccessKeySecret": issued.access_key_secret,
            "SecurityToken": issued.security_token,
            "Expiration": _utc(issued.expiration),
            "Bucket": issued.bucket,
            "Region": issued.region,
            "Endpoint": issued.endpoint,
            "Prefix": issued.prefix,
            "Scope": issued.scope,
            "RefreshAfter": _utc(issued.refresh_after),
            "ServerTime": _utc(issued.server_time),
        }


class StsErrorSerializer(serializers.Serializer):
    StatusCode = serializers.IntegerField()
    ErrorCode = serializers.CharField()
    ErrorMessage = serializers.CharField()
