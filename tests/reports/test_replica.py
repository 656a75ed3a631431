"""Reports read from a real PostgreSQL streaming replica (scripts/replica.py), never the primary.

The replica streams from the server holding the test databases, so these tests commit their rows
(transaction=True) and wait for the replica to replay them before reporting. Which server answered
is asked of the server itself (pg_is_in_recovery, inet_server_port), and the queries each alias
ran are captured.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connections, router
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from reports.routing import REPLICA_ALIAS, reports_reading
from tests.helpers import bearer
from tests.reports.conftest import at, make_upload
from uploads.models import StorageUsage, Upload

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", REPLICA_ALIAS])

DASHBOARD = "/admin/reports/reportsdashboard/"
REPORT_TABLES = ("uploads_upload", "uploads_storageusage", "reports_reconciliationrun")


def replica_caught_up() -> None:
    """Wait until the replica has replayed everything the primary wrote so far."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        (lsn,) = cursor.fetchone()
    deadline = time.monotonic() + 30
    with connections[REPLICA_ALIAS].cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn])
            if cursor.fetchone()[0]:
                return
            assert time.monotonic() < deadline, "the replica did not catch up in 30 s"
            time.sleep(0.02)


@pytest.fixture
def replica(settings):
    settings.REPORTS_DATABASE = REPLICA_ALIAS  # what REPORTS_DATABASE_URL sets in production
    return connections[REPLICA_ALIAS]


@pytest.fixture
def replicated(known, replica):
    replica_caught_up()
    return known


@pytest.fixture
def staff_api(staff_user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=bearer(staff_user)["Authorization"])
    return client


@contextmanager
def captured() -> Iterator[tuple[CaptureQueriesContext, CaptureQueriesContext]]:
    with (
        CaptureQueriesContext(connections["default"]) as primary,
        CaptureQueriesContext(connections[REPLICA_ALIAS]) as replica,
    ):
        yield primary, replica


def report_queries(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if any(t in q["sql"] for t in REPORT_TABLES)]


@contextmanager
def replica_unreachable(replica) -> Iterator[None]:
    """Point the replica's alias at a port nobody listens on (the shared replica stays up)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    replica.close()
    saved = replica.settings_dict["PORT"]
    replica.settings_dict["PORT"] = port
    try:
        yield
    finally:
        replica.close()
        replica.settings_dict["PORT"] = saved


@contextmanager
def replay_paused(replica) -> Iterator[None]:
    """Stop the replica applying WAL (it still receives it), so it falls behind the primary."""
    with replica.cursor() as cursor:
        cursor.execute("SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        with replica.cursor() as cursor:
            cursor.execute("SELECT pg_wal_replay_resume()")


def received_not_replayed(replica) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        (lsn,) = cursor.fetchone()
    deadline = time.monotonic() + 30
    with replica.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", [lsn])
            if cursor.fetchone()[0]:
                return
            assert time.monotonic() < deadline, "the replica did not receive the WAL in 30 s"
            time.sleep(0.02)


def test_the_alias_is_a_replica_of_the_primary(replica):
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery(), inet_server_port(), current_database()")
        primary = cursor.fetchone()
    with replica.cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery(), inet_server_port(), current_database()")
        standby = cursor.fetchone()
    assert primary[0] is False and standby[0] is True
    assert standby[1] == int(replica.settings_dict["PORT"]) != primary[1]
    assert standby[2] == primary[2]  # the same test database, streamed


def test_api_report_runs_on_the_replica(staff_api, replicated):
    with captured() as (primary, replica):
        response = staff_api.get("/api/reports/usage/")
    assert response.status_code == 200
    assert [(r["username"], r["bytes"]) for r in response.json()["rows"]] == [
        ("alice", 53000),
        ("bob", 400),
    ]
    assert float(response["Reports-Replica-Lag"]) >= 0
    assert report_queries(replica) and not report_queries(primary)


def test_dashboard_runs_on_the_replica_and_shows_its_lag(admin_client, replicated):
    with captured() as (primary, replica):
        response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    source, figures = response.context["source"], response.context["figures"]
    assert source.replica and source.lag_seconds >= 0 and source.max_staleness_seconds == 60
    assert (figures.users_with_uploads, figures.objects_stored) == (2, 5)
    html = response.content.decode()
    assert f"Read from the reports replica, {source.lag_seconds:.1f} s behind the primary" in html
    assert "(at most 60 s)" in html
    assert report_queries(replica) and not report_queries(primary)


def test_command_runs_on_the_replica(replicated):
    out, err = io.StringIO(), io.StringIO()
    with captured() as (primary, replica):
        call_command("report", "usage", "--format", "json", stdout=out, stderr=err, verbosity=2)
    rows = json.loads(out.getvalue())["rows"]
    assert [(r["username"], r["objects"]) for r in rows] == [("alice", 3), ("bob", 2)]
    assert err.getvalue().startswith("Read from the reports replica, ")
    assert report_queries(replica) and not report_queries(primary)


def test_without_a_replica_reports_read_the_primary(admin_client, known, settings):
    settings.REPORTS_DATABASE = None  # no REPORTS_DATABASE_URL
    with captured() as (primary, replica):
        response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    assert "Read from the primary database." in response.content.decode()
    assert report_queries(primary) and not replica.captured_queries


def test_a_lagging_replica_shows_its_lag_then_refuses_beyond_the_bound(
    admin_client, staff_api, replicated, replica, settings
):
    with replay_paused(replica):
        make_upload(replicated.carol, "image/gif", 9, at("2026-05-01T00:00:00"), "active")
        StorageUsage.objects.create(user=replicated.carol, objects_used=1, bytes_used=9)
        received_not_replayed(replica)
        settings.REPORTS_MAX_STALENESS_SECONDS = 3600
        response = admin_client.get(DASHBOARD)
        assert response.status_code == 200
        assert response.context["source"].lag_seconds > 0
        # Carol's upload is committed on the primary, not yet visible on the replica.
        assert response.context["figures"].objects_stored == 5

        settings.REPORTS_MAX_STALENESS_SECONDS = 0
        with captured() as (primary, _):
            api = staff_api.get("/api/reports/usage/")
            page = admin_client.get(DASHBOARD)
        assert api.status_code == 503 and api["Retry-After"] == "10"
        assert api.json()["error"]["code"] == "reports_replica_behind"
        assert "more than the 0 s allowed" in api.json()["error"]["message"]
        assert page.status_code == 503 and page["Retry-After"] == "10"
        assert "more than the 0 s allowed" in page.content.decode()
        assert not report_queries(primary)  # no fallback to the primary
        with pytest.raises(CommandError, match="behind the primary"):
            call_command("report", "usage")
    replica_caught_up()
    settings.REPORTS_MAX_STALENESS_SECONDS = 60
    assert admin_client.get(DASHBOARD).context["figures"].objects_stored == 6


def test_replica_down_is_503_with_retry_after_and_spares_the_primary(
    admin_client, staff_api, replicated, replica
):
    with replica_unreachable(replica), CaptureQueriesContext(connections["default"]) as primary:
        api = staff_api.get("/api/reports/top-uploaders/")
        page = admin_client.get(DASHBOARD)
        with pytest.raises(CommandError, match="replica\\) is unavailable"):
            call_command("report", "usage")
    assert api.status_code == 503 and api["Retry-After"] == "5"
    assert api.json()["error"]["code"] == "reports_replica_unavailable"
    assert page.status_code == 503 and page["Retry-After"] == "5"
    assert 'id="reports-unavailable"' in page.content.decode()
    assert not report_queries(primary)
    assert staff_api.get("/api/reports/top-uploaders/").status_code == 200  # back by itself


def test_writes_never_go_to_the_replica(replicated, replica):
    upload = Upload.objects.get(owner=replicated.bob, size=300)
    with reports_reading():
        assert router.db_for_read(Upload) == REPLICA_ALIAS
        assert router.db_for_write(Upload) == "default"
        seen = Upload.objects.get(pk=upload.pk)
        assert seen._state.db == REPLICA_ALIAS
        seen.filename = "renamed"
        with captured() as (primary, standby):
            seen.save(update_fields=["filename"])  # read on the replica, written to the primary
    assert any(q["sql"].startswith("UPDATE") for q in primary.captured_queries)
    assert not standby.captured_queries
    assert Upload.objects.using("default").get(pk=upload.pk).filename == "renamed"
    assert router.db_for_read(Upload) == "default"  # outside reports: the primary
    # Nothing is migrated there, and the server refuses a write sent to it on purpose.
    assert not any(router.allow_migrate_model(REPLICA_ALIAS, m) for m in apps.get_models())
    with pytest.raises(DatabaseError, match="read-only transaction"):
        Upload.objects.using(REPLICA_ALIAS).filter(pk=upload.pk).update(filename="x")
