"""What uploads does when accounts announces an event (connected in UploadsConfig.ready)."""

from __future__ import annotations

from django.conf import settings
from django.dispatch import receiver

from accounts.models import User
from accounts.signals import guest_created, guest_upgraded
from uploads.models import StorageUsage


@receiver(guest_created, dispatch_uid="uploads.guest_quota")
def give_guest_small_quota(sender, *, user: User, **kwargs) -> None:
    StorageUsage.objects.update_or_create(
        user=user,
        defaults={
            "max_bytes": settings.GUEST_QUOTA_BYTES,
            "max_objects": settings.GUEST_QUOTA_OBJECTS,
        },
    )


@receiver(guest_upgraded, dispatch_uid="uploads.guest_upgraded_quota")
def lift_guest_quota(sender, *, user: User, **kwargs) -> None:
    StorageUsage.objects.filter(user=user).update(max_bytes=None, max_objects=None)
