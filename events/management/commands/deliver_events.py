"""The delivery worker: fan new events out, post due deliveries, sleep briefly when idle."""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone

from events.delivery import RoundResult, deliveries_post, events_fan_out
from events.services import events_prune

logger = logging.getLogger("events.worker")

FAN_OUT_LIMIT = 500  # events made into deliveries per round
DELIVERY_LIMIT = 100  # deliveries claimed per round


class Command(BaseCommand):
    help = (
        "Post events to the webhook endpoints (a long-running worker; run several at once if "
        "needed). --once: deliver what is due now and exit."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Deliver what is due, then exit.")

    def handle(self, *args, once: bool = False, **options) -> None:
        stop = threading.Event()
        if not once:
            # SIGTERM (docker stop, systemd, Kubernetes): finish the round in hand, then exit.
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            self.stdout.write("Delivering events (SIGTERM stops after the current round).")
        totals = RoundResult()
        last_report = last_prune = time.monotonic()
        while not stop.is_set():
            close_old_connections()  # a dropped database connection is reopened next round
            try:
                fanned = events_fan_out(limit=FAN_OUT_LIMIT)
                result = deliveries_post(limit=DELIVERY_LIMIT)
            except Exception:
                if once:
                    raise
                logger.exception("Delivery round failed; retrying shortly")
                stop.wait(settings.EVENTS_POLL_SECONDS * 10)
                continue
            totals.delivered += result.delivered
            totals.retrying += result.retrying
            totals.parked += result.parked
            if once and not fanned and not result.attempted:
                break
            if time.monotonic() - last_report > 60:
                self._report(totals)
                last_report = time.monotonic()
            if time.monotonic() - last_prune > 3600:
                events_prune(before=timezone.now() - timedelta(days=settings.EVENTS_RETENTION_DAYS))
                last_prune = time.monotonic()
            # Unless a round was full, wait before the next: the rounds' fixed cost is then
            # shared by the events of a poll interval (under load) instead of paid per event.
            if fanned < FAN_OUT_LIMIT and result.claimed < DELIVERY_LIMIT:
                stop.wait(settings.EVENTS_POLL_SECONDS)
        self._report(totals)

    def _report(self, totals: RoundResult) -> None:
        self.stdout.write(
            f"Delivered {totals.delivered}, retrying {totals.retrying}, parked {totals.parked}.",
        )
        self.stdout.flush()
