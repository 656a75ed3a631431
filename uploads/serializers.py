from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from uploads.content_types import filename_clean
from uploads.models import Upload, UploadTicket
from uploads.oss import ProcessUrls

if TYPE_CHECKING:
    from uploads.signing import SignedTicket

_CONTENT_TYPE = re.compile(
    r"^[a-zA-Z0-9][a-zA-Z0-9!#$&^_.+-]{0,126}/[a-zA-Z0-9][a-zA-Z0-9!#$&^_.+-]{0,126}$"
)
_META_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
METADATA_MAX_KEYS = 16
METADATA_MAX_VALUE = 256


class TicketInputSerializer(serializers.Serializer):
    filename = serializers.CharField(max_length=255)
    size = serializers.IntegerField(min_value=0)
    # The pattern documents the media type in the schema; parameters after ";" are dropped.
    content_type = serializers.CharField(
        max_length=255,
        validators=[
            RegexValidator(
                r"^\s*[a-zA-Z0-9][a-zA-Z0-9!#$&^_.+-]{0,126}/[a-zA-Z0-9][a-zA-Z0-9!#$&^_.+-]{0,126}"
                r"\s*(;.*)?$",
                message="A media type like image/png.",
            )
        ],
    )
    metadata = serializers.DictField(
        # The pattern states in the schema what the field refuses anyway: NUL characters.
        child=serializers.CharField(
            max_length=METADATA_MAX_VALUE,
            allow_blank=True,
            validators=[RegexValidator(r"^[^\x00]*$", message="Null characters are not allowed.")],
        ),
        required=False,
        default=dict,
    )
    mode = serializers.ChoiceField(
        choices=UploadTicket.Mode.choices,
        default=UploadTicket.Mode.STS,
        help_text="sts: upload with your STS credentials and the callback headers; url: a "
        "presigned PUT URL (no credentials needed); form: a PostObject form (mini programs, "
        "HTML forms).",
    )

    def validate_filename(self, value: str) -> str:
        # Keep only the last path component: clients send full paths ("C:\\x\\a.png").
        name = filename_clean(re.split(r"[\\/]", value)[-1])
        if not name:
            raise serializers.ValidationError("A file name with at least one visible character.")
        return name

    def validate_content_type(self, value: str) -> str:
        base = value.split(";")[0].strip().lower()
        if not _CONTENT_TYPE.match(base):
            raise serializers.ValidationError("A media type like image/png.")
        return base

    def validate_metadata(self, value: dict) -> dict:
        if len(value) > METADATA_MAX_KEYS:
            raise serializers.ValidationError(f"At most {METADATA_MAX_KEYS} keys.")
        bad = [k for k in value if not _META_KEY.match(k)]
        if bad:
            raise serializers.ValidationError("Keys: 1-64 letters, digits, '_', '.' or '-'.")
        return value


class UploadListFilterSerializer(serializers.Serializer):
    content_type = serializers.CharField(max_length=255, required=False, default="")
    created_after = serializers.DateTimeField(required=False, default=None)
    created_before = serializers.DateTimeField(required=False, default=None)


class VariantOutputSerializer(serializers.Serializer):
    url = serializers.CharField()
    expires_at = serializers.DateTimeField()


@extend_schema_field(serializers.DictField(child=VariantOutputSerializer()))
class VariantsField(serializers.Field):
    """Variant name (IMAGE_VARIANTS) -> {url, expires_at} from an upload's ProcessUrls; {} when
    there is none. Rendered by hand: a nested serializer per variant cost more than the rest of
    a 50-item page."""

    def __init__(self, **kwargs) -> None:
        super().__init__(read_only=True, **kwargs)
        self._datetime = serializers.DateTimeField()
        self._formatted: tuple[object, str] = (None, "")

    def get_attribute(self, instance: object) -> ProcessUrls | dict:
        # DRF renders None as null without asking the field: no variants are {}.
        return super().get_attribute(instance) or {}

    def to_representation(self, value: ProcessUrls | dict) -> dict:
        if not isinstance(value, ProcessUrls):
            return {}
        # The URLs of a page share one expiry: formatted once.
        if self._formatted[0] != value.expires_at:
            self._formatted = (
                value.expires_at,
                self._datetime.to_representation(value.expires_at),
            )
        expires_at = self._formatted[1]
        return {name: {"url": url, "expires_at": expires_at} for name, url in value.urls.items()}


class UploadOutputSerializer(serializers.ModelSerializer):
    # Short-lived signed URLs of the derived images; {} unless OSS can process the upload.
    variants = VariantsField()

    class Meta:
        model = Upload
        fields = [
            "id",
            "key",
            "filename",
            "size",
            "content_type",
            "status",
            "created_at",
            "image_width",
            "image_height",
            "image_format",
            "metadata",
            "variants",
        ]


def iso_datetime(value, zone=None) -> str | None:
    """What DRF's DateTimeField renders (ISO 8601 in the current time zone, "Z" for UTC).
    `zone`: the current time zone, when the caller renders many (looking it up is most of the
    cost of one)."""
    if not value:
        return None
    text = value.astimezone(zone or timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def upload_rows(uploads: list[Upload]) -> list[dict]:
    """UploadOutputSerializer(uploads, many=True).data, built directly: the serializer's
    per-field machinery was most of the CPU of a 50-item page (tests/uploads hold the two equal).
    Each upload carries `variants` (ProcessUrls or None) as set by the view."""
    rows = []
    zone = timezone.get_current_timezone()
    expiry: tuple[object, str | None] = (None, None)
    for upload in uploads:
        variants = getattr(upload, "variants", None)
        rendered: dict = {}
        if isinstance(variants, ProcessUrls):
            if expiry[0] != variants.expires_at:  # a page's URLs share one expiry
                expiry = (variants.expires_at, iso_datetime(variants.expires_at, zone))
            rendered = {
                name: {"url": url, "expires_at": expiry[1]} for name, url in variants.urls.items()
            }
        rows.append(
            {
                "id": upload.id,
                "key": upload.key,
                "filename": upload.filename,
                "size": upload.size,
                "content_type": upload.content_type,
                "status": upload.status,
                "created_at": iso_datetime(upload.created_at, zone),
                "image_width": upload.image_width,
                "image_height": upload.image_height,
                "image_format": upload.image_format,
                "metadata": upload.metadata,
                "variants": rendered,
            }
        )
    return rows


class UploadPageOutputSerializer(serializers.Serializer):
    """One page of GET /api/uploads/ (cursor pagination, newest first): `next` is the URL of the
    older ones, null on the last page."""

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = UploadOutputSerializer(many=True)


class UploadDetailOutputSerializer(UploadOutputSerializer):
    download_url = serializers.CharField()
    download_expires_at = serializers.DateTimeField()

    class Meta(UploadOutputSerializer.Meta):
        fields = [
            *UploadOutputSerializer.Meta.fields,
            "etag",
            "download_url",
            "download_expires_at",
        ]


class UploadInstructionsSerializer(serializers.Serializer):
    method = serializers.CharField(help_text="PUT (url) or POST (form).")
    url = serializers.CharField()
    headers = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="url: send every one as is."
    )
    fields = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="form: post every one, in this order, before the file.",
    )
    file_field = serializers.CharField(required=False, help_text="form: the file's field name.")


class TicketOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    key = serializers.CharField()
    bucket = serializers.CharField()
    endpoint = serializers.CharField()
    region = serializers.CharField()
    content_type = serializers.CharField()
    max_size = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    headers = serializers.DictField(child=serializers.CharField())
    callback = serializers.DictField()
    mode = serializers.CharField()
    upload = UploadInstructionsSerializer(
        required=False,
        help_text="url and form tickets only: the request that uploads the file, signed by the "
        "server. Its URL, headers and fields must be sent exactly as given.",
    )


def ticket_fields(signed: SignedTicket) -> dict:
    """What POST /api/uploads/tickets/ answers, unrendered: TicketOutputSerializer's input."""
    issued = signed.issued
    ticket = issued.ticket
    body = {
        "id": ticket.id,
        "key": ticket.key,
        "bucket": ticket.bucket,
        "endpoint": settings.OSS_PUBLIC_ENDPOINT,
        "region": settings.OSS_REGION,
        "content_type": ticket.content_type,
        "max_size": ticket.declared_size,
        "expires_at": ticket.expires_at,
        "headers": issued.headers,
        "callback": issued.callback,
        "mode": ticket.mode,
    }
    if signed.upload is not None:
        body["upload"] = signed.upload
    return body


def ticket_body(signed: SignedTicket) -> dict:
    """TicketOutputSerializer(ticket_fields(signed)).data, built directly: the serializer's
    per-field machinery was a sixth of a ticket request's CPU (tests/uploads hold the two
    equal). Every other value is a string, an int or a dict of strings already."""
    body = ticket_fields(signed)
    body["id"] = str(body["id"])
    body["expires_at"] = iso_datetime(body["expires_at"])
    return body


class UsageOutputSerializer(serializers.Serializer):
    bytes_used = serializers.IntegerField()
    objects_used = serializers.IntegerField()
    bytes_reserved = serializers.IntegerField()
    objects_reserved = serializers.IntegerField()
    max_bytes = serializers.IntegerField()
    max_objects = serializers.IntegerField()


class CallbackAnswerSerializer(serializers.Serializer):
    """The callback's answer, relayed by OSS to the app (and given by a confirmation)."""

    ok = serializers.BooleanField()
    upload = UploadOutputSerializer(required=False, help_text="When ok.")
    error = serializers.DictField(required=False, help_text="When not ok: code and message.")
    key = serializers.CharField(required=False)
    object_removed = serializers.BooleanField(required=False)
