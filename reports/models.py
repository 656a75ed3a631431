"""What each reconciliation of the bucket against the metadata store found and did."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class ReconciliationRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Saved with every flush of the counters: a run that is "running" without progress for
    # RECONCILE_STALE_SECONDS was most likely killed outright (SIGKILL, a lost host).
    updated_at = models.DateTimeField(auto_now=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    bucket = models.CharField(max_length=63)
    prefix = models.CharField(max_length=1023)
    applied = models.BooleanField(default=False, help_text="False: a dry run that changed nothing.")
    stray_policy = models.CharField(max_length=16, help_text="RECONCILE_STRAY_OBJECTS at the time.")
    objects_listed = models.BigIntegerField(default=0)
    rows_checked = models.BigIntegerField(default=0)
    stray_objects = models.IntegerField(default=0)
    unowned_objects = models.IntegerField(default=0)
    missing_objects = models.IntegerField(default=0)
    expired_tickets = models.IntegerField(default=0)
    other_findings = models.IntegerField(default=0)
    skipped_recent = models.IntegerField(
        default=0, help_text="Objects left alone: too recent, or a valid ticket names them."
    )
    repaired = models.IntegerField(default=0)
    errors = models.IntegerField(default=0)
    error_message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        mode = "apply" if self.applied else "dry run"
        return f"reconciliation {self.pk} of {self.prefix} ({mode}, {self.status})"

    @property
    def is_stale(self) -> bool:
        stale_after = timedelta(seconds=settings.RECONCILE_STALE_SECONDS)
        return self.status == self.Status.RUNNING and timezone.now() - self.updated_at > stale_after

    @property
    def state(self) -> str:
        """The status as people should read it: a run that stopped moving says so."""
        if self.is_stale:
            when = timezone.localtime(self.updated_at).strftime("%Y-%m-%d %H:%M")
            return f"stale: no progress since {when} UTC (the process was probably killed)"
        return self.get_status_display().lower()

    @property
    def findings_total(self) -> int:
        return (
            self.stray_objects
            + self.unowned_objects
            + self.missing_objects
            + self.expired_tickets
            + self.other_findings
        )


class ReconciliationFinding(models.Model):
    class Kind(models.TextChoices):
        STRAY_OBJECT = "stray_object", "Object in a user's prefix with no upload row"
        UNOWNED_OBJECT = "unowned_object", "Object under the managed prefix, no such user"
        MISSING_OBJECT = "missing_object", "Active upload whose object is gone"
        EXPIRED_TICKET = "expired_ticket", "Ticket expired without a callback"
        REAPPEARED_OBJECT = "reappeared_object", "Upload marked missing whose object is back"
        DELETED_STILL_STORED = "deleted_still_stored", "Deleted upload whose object remains"
        CHANGED_OBJECT = "changed_object", "Active upload whose object differs in size or ETag"

    class Action(models.TextChoices):
        ADOPTED = "adopted", "Adopted: upload row created from a HEAD"
        DELETED = "deleted", "Object deleted"
        MARKED_MISSING = "marked_missing", "Upload marked missing, usage released"
        EXPIRED = "expired", "Ticket expired, reservation released"
        RESTORED = "restored", "Upload active again, usage counted"
        REPAIRED = "repaired", "Row and usage follow the object (the ticket allows it)"
        REFUSED = "refused", "Upload refused as its callback would have been: object removed"
        REPORTED = "reported", "Reported only"
        WOULD_ADOPT = "would_adopt", "Dry run: would adopt"
        WOULD_DELETE = "would_delete", "Dry run: would delete the object"
        WOULD_MARK_MISSING = "would_mark_missing", "Dry run: would mark missing"
        WOULD_EXPIRE = "would_expire", "Dry run: would expire the ticket"
        WOULD_RESTORE = "would_restore", "Dry run: would restore"
        WOULD_REPAIR = "would_repair", "Dry run: would check the object and repair the row"
        SKIPPED = "skipped", "Skipped: changed since it was seen"
        FAILED = "failed", "Repair failed"

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="findings")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    action = models.CharField(max_length=32, choices=Action.choices)
    key = models.CharField(max_length=1023)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    size = models.BigIntegerField(null=True, blank=True)
    upload_id = models.BigIntegerField(null=True, blank=True)
    ticket_id = models.UUIDField(null=True, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["run", "kind"], name="recon_finding_run_kind_idx")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.key} ({self.action})"


class ReportsDashboard(ReconciliationRun):
    """No data of its own: gives the staff dashboard an entry in the admin index."""

    class Meta:
        proxy = True
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"
