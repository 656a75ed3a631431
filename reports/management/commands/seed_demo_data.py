"""`manage.py seed_demo_data --uploads N [--users M]`: realistic demo data, in bulk."""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandParser

from reports.seeding import seed_demo_data


class ProgressLine:
    """A one-line progress bar on stderr (rewritten in place on a terminal)."""

    def __init__(self, stream=None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.perf_counter()
        self.stage = ""
        self.tty = self.stream.isatty()
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage != self.stage:
            if self.stage and self.tty:
                self.stream.write("\n")
            self.stage, self.started = stage, now
        finished = done >= total
        if not finished and now - self.last < 0.2:
            return  # repaint at most five times a second
        self.last = now
        frac = done / total if total else 1.0
        filled = int(frac * self.width)
        rate = done / max(now - self.started, 1e-6)
        line = (
            f"{stage:<18} [{'#' * filled}{'.' * (self.width - filled)}] {frac:6.1%} "
            f"{done:,}/{total:,}  {rate:,.0f}/s"
        )
        if self.tty:
            self.stream.write("\r" + line + ("\n" if finished else ""))
        elif finished:
            self.stream.write(line + "\n")
        self.stream.flush()


class Command(BaseCommand):
    help = "Fill the store with realistic demo users, uploads, refusals and credential grants."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--uploads", type=int, required=True)
        parser.add_argument("--users", type=int, default=None, help="Default: uploads / 200.")
        parser.add_argument("--days", type=int, default=180, help="Spread over the last N days.")
        parser.add_argument("--seed", type=int, default=None, help="Random seed (repeatable).")
        parser.add_argument("--batch-size", type=int, default=20_000)

    def handle(self, *args, **options) -> None:
        result = seed_demo_data(
            uploads=options["uploads"],
            users=options["users"],
            days=options["days"],
            seed=options["seed"],
            batch_size=options["batch_size"],
            progress=ProgressLine(self.stderr._out),
        )
        self.stdout.write(
            f"Seeded {result.users:,} users, {result.uploads:,} uploads, "
            f"{result.refusals:,} refusals and {result.grants:,} credential grants "
            f"in {result.seconds:.1f} s."
        )
