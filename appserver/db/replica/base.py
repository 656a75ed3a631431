"""The reports' read-only replica (REPORTS_DATABASE_URL): the project's PostgreSQL backend, for a
server that never takes writes.

Every session is read-only (``default_transaction_read_only``), so even a REPORTS_DATABASE_URL
that names the primary by mistake cannot be written through; the router never sends writes here
anyway (reports/routing.py), and a streaming replica refuses them itself.

In the tests the replica streams from the server that holds the test databases: it already has
the test database of its twin alias once the primary made it, so it creates, migrates, flushes
and destroys nothing, it only waits for the database to appear and then reads it. This is the
replica as production runs it, not Django's TEST MIRROR (which reads the primary under the
replica's name).
"""

from __future__ import annotations

import time

import psycopg
from django.conf import settings
from django.db.backends.postgresql import creation, operations

from appserver.db import base

APPEAR_SECONDS = 60


class DatabaseCreation(creation.DatabaseCreation):
    def create_test_db(self, verbosity=1, autoclobber=False, serialize=True, keepdb=False):
        name = self._get_test_db_name()
        if verbosity >= 1:
            self.log(f"Using the replica's copy of test database {name!r}...")
        self.connection.close()
        self._wait_for(name)
        settings.DATABASES[self.connection.alias]["NAME"] = name
        self.connection.settings_dict["NAME"] = name
        return name

    def _wait_for(self, name: str) -> None:
        # The primary's CREATE DATABASE reaches the replica a moment later.
        given = self.connection.settings_dict
        params = {k.lower(): given[k] for k in ("HOST", "PORT", "USER", "PASSWORD") if given[k]}
        deadline = time.monotonic() + APPEAR_SECONDS
        with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
            while not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [name]
            ).fetchone():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"The replica never received test database {name!r}.")
                time.sleep(0.1)

    def _destroy_test_db(self, test_database_name, verbosity):
        """Dropped on the primary; replication drops it here."""


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        # TransactionTestCase empties every database a test used; the primary's TRUNCATE is
        # replayed here.
        return []


class DatabaseWrapper(base.DatabaseWrapper):
    creation_class = DatabaseCreation
    ops_class = DatabaseOperations
