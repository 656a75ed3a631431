"""The PostgreSQL backend's health check (appserver/db): free while the connection is fine,
and a connection the server closed is replaced before a request uses it, not turned into a 500."""

from __future__ import annotations

import time

import pytest
from django.db import close_old_connections, connection, connections

from tests.helpers import bearer

pytestmark = pytest.mark.django_db(transaction=True)


def _terminate(pids: list[int], using=connection) -> None:
    """Kill these backends (from the connection `using`) and wait until PostgreSQL has closed
    them."""
    with using.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])
        for _ in range(200):
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.05)
    raise AssertionError(f"backends {pids} are still there")


def test_the_backend_is_ours():
    assert connection.vendor == "postgresql"
    assert type(connections["default"]).__module__ == "appserver.db.base"


def test_a_killed_backend_is_noticed_without_a_query():
    wrapper = connections.create_connection("default")
    try:
        wrapper.ensure_connection()
        assert wrapper.is_usable()
        _terminate([wrapper.connection.info.backend_pid])
        assert not wrapper.is_usable()
    finally:
        wrapper.close()


def test_a_request_survives_the_database_closing_its_connection(client, user, settings):
    """Django's request cycle, this thread's connection kept between requests as CONN_MAX_AGE
    keeps it: a killed backend is replaced before the request uses it, which answers 200."""
    headers = {"Authorization": bearer(user)["Authorization"]}
    assert client.get("/api/auth/me/", headers=headers).status_code == 200
    assert connection.connection is not None  # kept after the request
    killed = connection.connection.info.backend_pid
    killer = connections.create_connection("default")
    try:
        _terminate([killed], using=killer)  # not from this connection: it is the one killed
    finally:
        killer.close()
    # What the WSGI handler does when a request starts (the test client skips it so that tests
    # keep their connection): from here the next query runs the health check first.
    close_old_connections()
    response = client.get("/api/auth/me/", headers=headers)
    assert response.status_code == 200, response.content
    assert response.json()["username"] == user.username
    assert connection.connection.info.backend_pid != killed
