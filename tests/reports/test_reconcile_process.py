"""`manage.py reconcile` as an operator runs it, in a process of its own: stopped by SIGTERM it
records the run as interrupted; a run killed outright shows as stale; it finds `make run`'s
emulator on another port through the same EMULATOR_PORT, and says which setting to set when
nothing answers."""

from __future__ import annotations

import http.server
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.utils import timezone

from reports.models import ReconciliationRun
from tests.helpers import LocalServer
from tests.processes import ROOT, database_url, free_port, run_manage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow(5)]


def _env(**extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "APP_ENV": "local", "DATABASE_URL": database_url(connection),
            **extra}  # fmt: skip


def test_sigterm_records_the_run_as_interrupted():
    arrived, release = threading.Event(), threading.Event()

    class Stalled(http.server.BaseHTTPRequestHandler):
        """An OSS that takes the ListObjects request and does not answer (yet)."""

        def do_GET(self) -> None:
            arrived.set()
            release.wait(30)
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    oss = LocalServer(Stalled)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "reconcile", "--apply"],
        cwd=ROOT,
        env=_env(OSS_ENDPOINT=oss.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert arrived.wait(60), process.communicate(timeout=5)
        process.send_signal(signal.SIGTERM)  # what `kill`, a deploy or `docker stop` sends
        _, stderr = process.communicate(timeout=30)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        oss.close()
    assert process.returncode == 130
    assert stderr.endswith(
        "CommandError: Interrupted: the run is recorded as interrupted. Run reconcile again to "
        "finish; it resumes safely from what is there now.\n"
    )
    run = ReconciliationRun.objects.get()
    assert (run.status, run.state, run.finished_at is not None) == (
        "interrupted",
        "interrupted",
        True,
    )


def test_a_run_that_stopped_moving_shows_as_stale(admin_client, settings):
    settings.RECONCILE_STALE_SECONDS = 900
    killed = ReconciliationRun.objects.create(bucket="b", prefix="users/", stray_policy="adopt")
    moving = ReconciliationRun.objects.create(bucket="b", prefix="users/", stray_policy="adopt")
    last_progress = timezone.now() - timedelta(hours=2)
    ReconciliationRun.objects.filter(pk=killed.pk).update(updated_at=last_progress)
    killed.refresh_from_db()
    stale = (
        f"stale: no progress since {last_progress:%Y-%m-%d %H:%M} UTC (the process was probably "
        "killed)"
    )
    assert (killed.state, moving.state) == (stale, "running")

    listing = admin_client.get("/admin/reports/reconciliationrun/").content.decode()
    assert listing.count(stale) == 1
    ReconciliationRun.objects.filter(pk=moving.pk).delete()
    dashboard = admin_client.get("/admin/reports/reportsdashboard/").content.decode()
    assert f"dry run, {stale}:" in dashboard


def test_finds_make_runs_emulator_on_another_port(emulator):
    port = str(urlsplit(emulator.endpoint).port)
    assert port != "9100"
    result = run_manage("reconcile", env=_env(EMULATOR_PORT=port))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Reconciliation ")
    assert ReconciliationRun.objects.get().status == "finished"


def test_says_which_setting_to_set_when_oss_does_not_answer():
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = run_manage("reconcile", env=_env(OSS_ENDPOINT=nowhere))
    assert result.returncode == 1
    assert result.stderr.endswith(
        "CommandError: ListObjects failed: no answer from OSS (ConnectionError) "
        f"(OSS_ENDPOINT is {nowhere}). Set OSS_ENDPOINT, or EMULATOR_PORT to the port `make run` "
        "gave its emulator.\n"
    )
