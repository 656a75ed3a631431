"""Django's PostgreSQL backend with a health check that costs no round trip, and cursors that
bind parameters on the server for the few hot statements worth preparing.

CONN_HEALTH_CHECKS makes Django test a reused connection at the start of every request; the
stock test is a ``SELECT 1``, a full round trip that was a fifth of an upload callback's time.
An idle connection has nothing to read unless the server closed it or spoke on its own (a
termination notice when PostgreSQL shuts down or an administrator kills the backend, a
parameter change), so the socket is polled first and the ``SELECT 1`` is sent only when there
is something to read. A connection that died without a word (a network cut) fails on its first
query, as with the stock check it would have failed a moment later; Django then drops it.

Django binds parameters on the client, so nothing the ORM sends is ever prepared. A statement
sent through `server_binding_cursor` is prepared by psycopg once it has run
``prepare_threshold`` times on a connection (settings: DB_PREPARE_THRESHOLD; empty disables it,
for PgBouncer in transaction mode before 1.21): the upload callback's one statement spends more
time being planned than being executed.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    def server_binding_cursor(self):
        """Like ``cursor()``, with parameters bound (and the statement prepared) on the server.
        Parameters must then have types PostgreSQL can infer from where they are used."""
        self.close_if_health_check_failed()
        self.ensure_connection()
        with self.wrap_database_errors:
            return self._prepare_cursor(base.ServerBindingCursor(self.connection))

    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if connection.info.transaction_status != pq.TransactionStatus.IDLE:
            return super().is_usable()
        poller = select.poll()  # not select.select: file descriptors may exceed 1023
        try:
            poller.register(connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
            pending = poller.poll(0)
        except (OSError, ValueError):
            return False
        return super().is_usable() if pending else True
