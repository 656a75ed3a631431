from django.core.management.base import BaseCommand

from uploads.erasure import guests_expire


class Command(BaseCommand):
    help = (
        "Erase guests older than GUEST_TTL_DAYS that never upgraded (their objects too), and "
        "continue every erasure that was interrupted. Run it every few minutes (cron)."
    )

    def handle(self, *args, **options) -> None:
        result = guests_expire()
        self.stdout.write(
            f"Erased {result.guests} expired guest(s); continued {result.continued} "
            f"erasure(s); {result.waiting} waiting for the storage service."
        )
