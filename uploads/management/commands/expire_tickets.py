from django.core.management.base import BaseCommand

from uploads.services import tickets_expire


class Command(BaseCommand):
    help = "Expire unused upload tickets past their deadline and release their reserved quota."

    def handle(self, *args, **options) -> None:
        count = tickets_expire()
        self.stdout.write(f"Expired {count} ticket(s).")
