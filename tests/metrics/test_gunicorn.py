"""Under gunicorn with several worker processes, a scrape is the sum of all of them, whichever
worker answers it, and stays so when a worker dies and is replaced (gunicorn.conf.py's
multiprocess directory and child_exit hook). The app runs as the image runs it."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.db import connection
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from tests.metrics.conftest import scrape
from tests.processes import AppServer, app_environment, database_url

pytestmark = pytest.mark.django_db(transaction=True)

ROUTE = {"endpoint": "/api/uploads/usage/", "method": "GET", "status": "401"}
REQUESTS = "appserver_http_requests_total"


def _app(tmp_path: Path, **env: str) -> AppServer:
    return AppServer(
        app_environment(
            DATABASE_URL=database_url(connection),
            REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
            # Sync workers, one request each at a time: concurrent requests must spread.
            GUNICORN_THREADS="1",
            **env,
        ),
        log=tmp_path / "gunicorn.log",
    )


def _unauthenticated(app: AppServer, count: int) -> None:
    def one(_: int) -> int:
        return requests.get(app.url + "/api/uploads/usage/", timeout=15).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(one, range(count))) == {401}


def _worker_pids(directory: Path) -> set[int]:
    return {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("counter_*.db")}


def test_a_scrape_adds_up_every_worker_and_keeps_a_dead_workers_counts(tmp_path):
    directory = tmp_path / "metrics"
    app = _app(tmp_path, GUNICORN_WORKERS="3", PROMETHEUS_MULTIPROC_DIR=str(directory))
    try:
        _unauthenticated(app, 60)
        writers = _worker_pids(directory)
        assert len(writers) >= 2, app.log()  # the requests really were spread over processes
        # Each scrape may be answered by another worker: every one sees all 60.
        for _ in range(6):
            assert scrape(app.url).value(REQUESTS, **ROUTE) == 60
        assert (
            scrape(app.url).value(
                "appserver_http_request_duration_seconds_count",
                endpoint="/api/uploads/usage/",
                method="GET",
            )
            == 60
        )

        # A worker dies (as when it is recycled or killed): its counts stay in the sum.
        victim = sorted(writers)[0]
        os.kill(victim, signal.SIGKILL)
        sent, deadline = 60, time.monotonic() + 30
        while not _worker_pids(directory) - writers and time.monotonic() < deadline:
            _unauthenticated(app, 3)  # until its replacement has served something
            sent += 3
        assert _worker_pids(directory) - writers, app.log()
        assert scrape(app.url).value(REQUESTS, **ROUTE) == sent
    finally:
        app.close()


def test_values_of_a_previous_run_are_wiped_at_start(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    # What a previous run of the server left behind: 1000 of these requests.
    stale = MmapedDict(str(directory / "counter_4242.db"))
    key = mmap_key(
        "appserver_http_requests",
        REQUESTS,
        ("endpoint", "method", "status"),
        tuple(ROUTE.values()),
        "stale",
    )
    stale.write_value(key, 1000.0, 0.0)
    stale.close()
    app = _app(tmp_path, GUNICORN_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(directory))
    try:
        assert not (directory / "counter_4242.db").exists()
        _unauthenticated(app, 5)
        assert scrape(app.url).value(REQUESTS, **ROUTE) == 5
    finally:
        app.close()


def test_without_a_directory_gunicorn_makes_its_own_and_removes_it(tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    app = _app(tmp_path, GUNICORN_WORKERS="2", TMPDIR=str(temporary))
    try:
        made = list(temporary.glob("appserver-metrics-*"))
        assert len(made) == 1
        _unauthenticated(app, 10)
        assert scrape(app.url).value(REQUESTS, **ROUTE) == 10
    finally:
        app.close()
    assert not made[0].exists()
