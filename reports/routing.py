"""Reports read from a PostgreSQL streaming replica (REPORTS_DATABASE_URL), never the primary.

The report queries aggregate over whole tables; on the primary they would compete with the
upload callbacks for CPU, I/O and buffer cache. So the three ways in (the staff API, the admin
dashboard, `manage.py report`) run them inside `reports_reading()`, and `ReportsRouter` sends the
reads made there to the replica's alias. Everything else, in the same request too (sessions,
staff user, throttles), keeps reading the primary; writes always go to the primary, even for an
object that was read from the replica, and nothing is ever migrated on the replica.

Bounded staleness: before the reports run, the replica is asked how far behind it is (zero while
it has replayed everything it received and is streaming; otherwise the age of the last
transaction it replayed). Beyond REPORTS_MAX_STALENESS_SECONDS, or when it does not answer, the
report fails with 503 and Retry-After instead of falling back to the primary: a replica falls
behind when the primary is busy, the moment it most needs sparing, and a report that silently
shows old figures is worse than one that says "retry". The lag is shown on the dashboard and in
the API's ``Reports-Replica-Lag`` header.

Without REPORTS_DATABASE_URL, reports read the primary as before (the embedded SQLite default).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from appserver.errors import ServiceUnavailable

REPLICA_ALIAS = "reports"  # appserver/conf/database.py defines it from REPORTS_DATABASE_URL

_reading_from: ContextVar[str | None] = ContextVar("reports_reading_from", default=None)

# Zero while everything received is replayed and the primary is streaming to it; else the age of
# the last replayed commit (it grows while the primary is unreachable: the replica cannot know
# what it missed). NULL before the first replayed commit: unknown, treated as too stale.
# A server not in recovery is a primary (a promoted replica): current by definition.
# pg_stat_wal_receiver shows its status only to roles with pg_read_all_stats; to others its row
# (a WAL receiver runs) with a NULL status, taken as streaming.
_LAG_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN 0
            WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
                 AND EXISTS (SELECT FROM pg_stat_wal_receiver
                             WHERE status = 'streaming' OR status IS NULL)
            THEN 0
            ELSE EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())
       END
"""


class ReportsReplicaUnavailable(ServiceUnavailable):
    code, message = (
        "reports_replica_unavailable",
        "The reports database (a replica) is unavailable. Retry later.",
    )


class ReportsReplicaBehind(ServiceUnavailable):
    code = "reports_replica_behind"


@dataclass(frozen=True)
class ReportsSource:
    """Where a report's figures come from, and how old they may be."""

    alias: str
    replica: bool  # False: the primary (no REPORTS_DATABASE_URL)
    lag_seconds: float  # 0.0 on the primary
    max_staleness_seconds: float

    @property
    def description(self) -> str:
        if not self.replica:
            return "Read from the primary database."
        return (
            f"Read from the reports replica, {self.lag_seconds:.1f} s behind the primary"
            f" (at most {self.max_staleness_seconds:g} s)."
        )


def reports_source_check(*, alias: str) -> ReportsSource:
    """The replica's lag; 503 when it does not answer or is further behind than allowed."""
    bound = settings.REPORTS_MAX_STALENESS_SECONDS
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(_LAG_SQL)
            _, lag = cursor.fetchone()
    except DatabaseError as exc:
        connections[alias].close()  # the next report connects afresh
        raise ReportsReplicaUnavailable() from exc
    if lag is None or float(lag) > bound:
        behind = "an unknown time" if lag is None else f"{float(lag):.0f} s"
        raise ReportsReplicaBehind(
            f"The reports replica is {behind} behind the primary, more than the {bound:g} s"
            " allowed (REPORTS_MAX_STALENESS_SECONDS). Retry later.",
            retry_after=10,
        )
    return ReportsSource(
        alias=alias, replica=True, lag_seconds=float(lag), max_staleness_seconds=bound
    )


@contextmanager
def reports_reading() -> Iterator[ReportsSource]:
    """Run reports inside: their reads go to the replica, if one is configured and fresh enough.

    Evaluate querysets inside the block (the selectors return lists): a queryset evaluated after
    it reads the primary.
    """
    alias = settings.REPORTS_DATABASE
    if not alias:
        yield ReportsSource(
            alias=DEFAULT_DB_ALIAS,
            replica=False,
            lag_seconds=0.0,
            max_staleness_seconds=settings.REPORTS_MAX_STALENESS_SECONDS,
        )
        return
    source = reports_source_check(alias=alias)
    token = _reading_from.set(alias)
    try:
        yield source
    finally:
        _reading_from.reset(token)


class ReportsRouter:
    """settings.DATABASE_ROUTERS: report reads to the replica, everything else to the primary."""

    def db_for_read(self, model, **hints) -> str | None:
        return _reading_from.get()

    def db_for_write(self, model, **hints) -> str:
        # Explicit: without a router's answer Django writes an instance back to the database it
        # was read from, which for a report's rows is the replica.
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True  # the replica is a copy of the primary: the same rows

    def allow_migrate(self, db: str, app_label: str, model_name=None, **hints) -> bool | None:
        return False if db == REPLICA_ALIAS else None
