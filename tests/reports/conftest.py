"""A small, fully known data set: every report figure in these tests is computed by hand from it.

alice  u1 image/jpeg   1000  2026-03-02 10:00     active
       u2 image/png    2000  2026-03-02 23:59:59  active
       u3 video/mp4   50000  2026-03-03 00:00     active
       u4 image/jpeg    700  2026-03-10 08:00     deleted
bob    u5 image/jpeg    300  2026-03-03 12:00     active
       u6 application/pdf 4000 2026-04-01 09:00   missing
       u7 image/jpeg    100  2026-04-15 18:30     active
carol  nothing
Usage counters: alice 3 objects / 53000 bytes; bob 2 / 400 (reserved 5000 by an open ticket).
Refusals: quota_exceeded alice 03-05, quota_exceeded bob 04-02, size_mismatch alice 03-06 (png).
Credential grants: alice 03-02 x2, bob 03-02 x1, alice 03-04 x1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import User
from tests.factories import (
    CallbackRefusalFactory,
    CredentialGrantFactory,
    StorageUsageFactory,
    UploadFactory,
    UserFactory,
)
from tests.webclient.conftest import chromium_path  # noqa: F401 - fixture for the browser test
from tokens.models import CredentialGrant
from uploads.models import CallbackRefusal, Upload


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_upload(owner: User, content_type: str, size: int, when: datetime, status: str) -> Upload:
    upload = UploadFactory(
        owner=owner,
        bucket="test-bucket",
        key=f"users/{owner.public_id}/{when:%Y%m%d%H%M%S}-{size}",
        filename="f",
        size=size,
        content_type=content_type,
        status=status,
    )
    # created_at is auto_now_add: set the known date afterwards.
    Upload.objects.filter(pk=upload.pk).update(created_at=when)
    return upload


def make_refusal(owner: User, reason: str, when: datetime, content_type: str = "") -> None:
    refusal = CallbackRefusalFactory(
        reason=reason,
        message="m",
        owner=owner,
        bucket="test-bucket",
        key=f"users/{owner.public_id}/r",
        content_type=content_type,
    )
    CallbackRefusal.objects.filter(pk=refusal.pk).update(created_at=when)


def make_grant(user: User, when: datetime) -> None:
    grant = CredentialGrantFactory(
        user=user, scope="upload", bucket="test-bucket", expiration=when + timedelta(hours=1)
    )
    CredentialGrant.objects.filter(pk=grant.pk).update(created_at=when)


@dataclass
class Known:
    alice: User
    bob: User
    carol: User


@pytest.fixture
def known(db) -> Known:
    alice = UserFactory(username="alice")
    bob = UserFactory(username="bob")
    carol = UserFactory(username="carol")
    make_upload(alice, "image/jpeg", 1000, at("2026-03-02T10:00:00"), "active")
    make_upload(alice, "image/png", 2000, at("2026-03-02T23:59:59"), "active")
    make_upload(alice, "video/mp4", 50000, at("2026-03-03T00:00:00"), "active")
    make_upload(alice, "image/jpeg", 700, at("2026-03-10T08:00:00"), "deleted")
    make_upload(bob, "image/jpeg", 300, at("2026-03-03T12:00:00"), "active")
    make_upload(bob, "application/pdf", 4000, at("2026-04-01T09:00:00"), "missing")
    make_upload(bob, "image/jpeg", 100, at("2026-04-15T18:30:00"), "active")
    StorageUsageFactory(user=alice, objects_used=3, bytes_used=53000)
    StorageUsageFactory(
        user=bob, objects_used=2, bytes_used=400, bytes_reserved=5000, objects_reserved=1
    )
    make_refusal(alice, "quota_exceeded", at("2026-03-05T10:00:00"))
    make_refusal(bob, "quota_exceeded", at("2026-04-02T10:00:00"))
    make_refusal(alice, "size_mismatch", at("2026-03-06T10:00:00"), "image/png")
    make_grant(alice, at("2026-03-02T08:00:00"))
    make_grant(alice, at("2026-03-02T20:00:00"))
    make_grant(bob, at("2026-03-02T09:00:00"))
    make_grant(alice, at("2026-03-04T09:00:00"))
    return Known(alice=alice, bob=bob, carol=carol)
