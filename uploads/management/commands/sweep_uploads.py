"""`manage.py sweep_uploads`: settle what changed since the last sweep (run it every minute)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from appserver.errors import AppError
from uploads.erasure import guests_expire
from uploads.sweep import uploads_sweep


class Command(BaseCommand):
    help = (
        "Make the upload records and the bucket agree for everything that can have changed "
        "since the last sweep: confirm or expire tickets, adopt or delete stray objects, check "
        "rows against their objects; erase guests past GUEST_TTL_DAYS and continue interrupted "
        "erasures. Safe to run from many places at once."
    )

    def handle(self, *args, **options) -> None:
        try:
            result = uploads_sweep()
        except AppError as exc:
            # The mark did not move: the next run looks at the same window again.
            raise CommandError(f"Sweep failed: {exc.message}") from exc
        self.stdout.write(f"Sweep: {result.summary()}.")
        guests = guests_expire()  # its own pass: each erasure is idempotent, so overlap is safe
        self.stdout.write(
            f"Guests: {guests.guests} erased, {guests.continued} erasure(s) continued, "
            f"{guests.waiting} waiting for the storage service."
        )
