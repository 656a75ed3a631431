"""The transactional outbox (Event), the receivers (WebhookEndpoint) and each event's delivery
to each receiver (Delivery).

An event row is written in the transaction of the state change it reports, so it exists exactly
when the change committed. The worker (`manage.py deliver_events`) fans each new event out into
one Delivery per matching active endpoint, then posts deliveries in event order per (endpoint,
user). events sits below accounts and uploads (they write events; it imports neither), so a
user is named by their public id, as a string.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class EventType(models.TextChoices):
    UPLOAD_ACCEPTED = "upload.accepted", "upload.accepted"
    UPLOAD_REFUSED = "upload.refused", "upload.refused"
    UPLOAD_DELETED = "upload.deleted", "upload.deleted"
    UPLOAD_ADOPTED = "upload.adopted", "upload.adopted"
    QUOTA_EXCEEDED = "quota.exceeded", "quota.exceeded"
    USER_SUSPENDED = "user.suspended", "user.suspended"
    USER_ERASED = "user.erased", "user.erased"


class Event(models.Model):
    """One fact, as receivers get it: id, type, time, the user's public id and the facts."""

    # The primary key orders a user's events: every writer of a user's upload events holds that
    # user's StorageUsage row lock, so their ids are allocated in commit order.
    id = models.BigAutoField(primary_key=True)
    # What receivers see as the event id and use as the idempotency key.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=40, choices=EventType.choices)
    occurred_at = models.DateTimeField(db_index=True)
    user_public_id = models.CharField(max_length=64, blank=True, db_index=True)
    data = models.JSONField(default=dict)
    # False until the worker has created its deliveries.
    dispatched = models.BooleanField(default=False)

    class Meta:
        ordering = ("-id",)
        indexes = [
            models.Index(
                fields=["id"], name="event_undispatched_idx", condition=Q(dispatched=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.uid}"


class WebhookEndpoint(models.Model):
    """A receiver: the only addresses the worker ever contacts."""

    name = models.CharField(max_length=100, blank=True)
    url = models.URLField(max_length=500)
    # Empty: every type.
    event_types = models.JSONField(default=list, blank=True)
    # The signing secret, encrypted (events/secrets.py); never displayed after it is set.
    secret_sealed = models.TextField(editable=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name or self.url

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class Delivery(models.Model):
    """One event to one endpoint: pending until a 2xx, or failed (parked) after the last try."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (parked)"

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    # The event's, copied: the claim query orders and blocks per (endpoint, user) by index.
    user_public_id = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="delivery_event_endpoint")
        ]
        indexes = [
            # The claim: the due heads, and "is an earlier event of this user still pending?".
            models.Index(
                fields=["endpoint", "user_public_id", "event"],
                name="delivery_pending_line_idx",
                condition=Q(state="pending"),
            ),
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_pending_due_idx",
                condition=Q(state="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} -> {self.endpoint}"
