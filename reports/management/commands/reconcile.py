"""`manage.py reconcile [--prefix P] [--apply]`: compare the bucket with the store, and repair."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from appserver.errors import AppError
from reports.reconciliation import ReconcileProgress, managed_root, reconciliation_run

SHOWN = 50


class _ProgressLine:
    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self.last = 0.0

    def __call__(self, state: ReconcileProgress) -> None:
        now = time.perf_counter()
        if now - self.last < 0.5:
            return
        self.last = now
        expected = max(state.units_total, state.objects_listed, 1)
        filled = int(state.objects_listed / expected * 30)
        rate = state.objects_listed / max(now - self.started, 1e-6)
        line = (
            f"reconcile [{'#' * filled}{'.' * (30 - filled)}] objects {state.objects_listed:,}"
            f"/~{state.units_total:,} ({rate:,.0f}/s)  users {state.units_done:,}  "
            f"rows {state.rows_checked:,}  findings {state.findings:,}"
        )
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _stoppable() -> Iterator[None]:
    """SIGTERM (a deploy, `kill`, a container stopping) and SIGHUP stop a run as Ctrl-C does, so
    it is recorded as interrupted instead of staying "running" forever. SIGINT too, explicitly:
    a process started in the background of a script inherits SIGINT ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, _raise_interrupt) for signum in stopping}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Command(BaseCommand):
    help = (
        "Compare the bucket (under the managed prefix) with the upload records, both ways. "
        "Dry run unless --apply."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--prefix", default=None, help="Narrow the run (inside the root).")
        parser.add_argument("--apply", action="store_true", help="Repair what is found.")

    def handle(self, *args, **options) -> None:
        apply = options["apply"]
        verbosity = options["verbosity"]
        stream = self.stderr._out if hasattr(self.stderr, "_out") else sys.stderr
        progress = _ProgressLine(stream) if verbosity >= 1 else None
        try:
            with _stoppable():
                run = reconciliation_run(prefix=options["prefix"], apply=apply, progress=progress)
        except KeyboardInterrupt:
            raise CommandError(
                "Interrupted: the run is recorded as interrupted. Run reconcile again to finish; "
                "it resumes safely from what is there now.",
                returncode=130,
            ) from None
        except AppError as exc:
            if exc.code == "storage_unavailable":
                raise CommandError(
                    f"{exc.message} (OSS_ENDPOINT is {settings.OSS_ENDPOINT}). Set OSS_ENDPOINT, "
                    "or EMULATOR_PORT to the port `make run` gave its emulator."
                ) from exc
            raise CommandError(exc.message) from exc
        if progress and progress.tty:
            stream.write("\n")
        mode = "APPLIED" if apply else "DRY RUN (nothing changed; --apply repairs)"
        self.stdout.write(
            f"Reconciliation {run.pk} of {settings.OSS_BUCKET}/{run.prefix} "
            f"(managed root {managed_root()!r}, stray objects: {run.stray_policy}): {mode}"
        )
        findings = run.findings.order_by("id")
        shown = findings if verbosity >= 2 else findings[:SHOWN]
        for finding in shown.select_related("owner"):
            owner = f" owner={finding.owner.username}" if finding.owner else ""
            size = f" size={finding.size}" if finding.size is not None else ""
            detail = f" ({finding.detail})" if finding.detail else ""
            self.stdout.write(
                f"  {finding.action:<18} {finding.kind:<20} {finding.key}{owner}{size}{detail}"
            )
        total = run.findings_total
        if verbosity < 2 and total > SHOWN:
            self.stdout.write(
                f"  ... and {total - SHOWN:,} more (-v 2 lists all; admin: run {run.pk})"
            )
        self.stdout.write(
            f"Summary: {run.objects_listed:,} objects listed, {run.rows_checked:,} rows checked; "
            f"{run.stray_objects} stray, {run.unowned_objects} unowned, "
            f"{run.missing_objects} missing, {run.expired_tickets} expired tickets, "
            f"{run.other_findings} other; {run.repaired} repaired, {run.errors} errors, "
            f"{run.skipped_recent} left alone (recent or awaiting their callback)."
        )
        if run.errors:
            raise CommandError(f"{run.errors} repair(s) failed; run again to retry them.")
