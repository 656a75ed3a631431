"""factory-boy factories, one per model: valid rows with boring defaults.

Keys live under the owner's own prefix in the configured bucket, as the services would write
them; override only what a test is about.
"""

from __future__ import annotations

from datetime import timedelta

import factory
from django.conf import settings
from django.utils import timezone

from accounts.models import User
from accounts.selectors import user_storage_prefix
from reports.models import ReconciliationFinding, ReconciliationRun
from tokens.models import CredentialGrant
from uploads.models import CallbackRefusal, StorageUsage, Upload, UploadTicket

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


def _bucket() -> str:
    return settings.OSS_BUCKET


def _key_of(owner: User, name: str) -> str:
    return f"{user_storage_prefix(user=owner)}{name}"


class UploadTicketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UploadTicket

    owner = factory.SubFactory(UserFactory)
    bucket = factory.LazyFunction(_bucket)
    filename = factory.Sequence(lambda n: f"photo{n}.png")
    key = factory.LazyAttribute(lambda t: _key_of(t.owner, t.filename))
    declared_size = 1024
    content_type = "image/png"
    reserved_bytes = factory.SelfAttribute("declared_size")
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=15))


class UploadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Upload

    owner = factory.SubFactory(UserFactory)
    bucket = factory.LazyFunction(_bucket)
    filename = factory.Sequence(lambda n: f"photo{n}.png")
    key = factory.LazyAttribute(lambda u: _key_of(u.owner, u.filename))
    size = 1024
    content_type = "image/png"


class CallbackRefusalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CallbackRefusal

    reason = CallbackRefusal.Reason.NO_TICKET
    message = "No upload ticket names this object."
    owner = factory.SubFactory(UserFactory)
    bucket = factory.LazyFunction(_bucket)
    key = factory.LazyAttribute(
        lambda r: _key_of(r.owner, "refused.bin") if r.owner else "stray/refused.bin"
    )


class StorageUsageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StorageUsage
        django_get_or_create = ("user",)

    user = factory.SubFactory(UserFactory)


class CredentialGrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CredentialGrant

    user = factory.SubFactory(UserFactory)
    scope = "readwrite"
    bucket = factory.LazyFunction(_bucket)
    prefix = factory.LazyAttribute(lambda g: user_storage_prefix(user=g.user) if g.user else "")
    policy_sha256 = "0" * 64
    access_key_id = factory.Sequence(lambda n: f"STS.test{n:06d}")
    expiration = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=1))


class ReconciliationRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReconciliationRun

    bucket = factory.LazyFunction(_bucket)
    prefix = "users/"
    stray_policy = "adopt"


class ReconciliationFindingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReconciliationFinding

    run = factory.SubFactory(ReconciliationRunFactory)
    kind = ReconciliationFinding.Kind.STRAY_OBJECT
    action = ReconciliationFinding.Action.REPORTED
    key = factory.Sequence(lambda n: f"users/unknown/{n}.bin")
