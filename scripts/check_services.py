"""Before the test suite: are PostgreSQL and Redis reachable, and does the reports' replica run?
If not, say exactly what to run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import redis

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'


def main() -> int:
    failures = []
    db_url = os.environ["DATABASE_URL"]
    parsed = urlparse(db_url)
    try:
        # The "postgres" maintenance database always exists; the test database is created later.
        psycopg.connect(
            host=parsed.hostname,
            port=parsed.port or 5432,
            user=parsed.username,
            password=parsed.password,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.Error as exc:
        failures.append(
            f"PostgreSQL is not reachable at {parsed.hostname}:{parsed.port or 5432} "
            f"({str(exc).strip().splitlines()[0]}).\n  Start it with:  {START_POSTGRES}\n"
            "  or point DATABASE_URL at a running server."
        )
    redis_url = os.environ["REDIS_URL"]
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        failures.append(
            f"Redis is not reachable at {redis_url} ({exc}).\n  Start it with:  {START_REDIS}\n"
            "  or point REDIS_URL at a running server."
        )
    if not failures and not os.environ.get("REPORTS_DATABASE_URL"):
        # The reports' tests read a streaming replica of this server (tests/settings.py starts it
        # with this script too; starting it here says why it cannot start before pytest does).
        replica = subprocess.run(  # noqa: S603 - our own script
            [sys.executable, str(Path(__file__).with_name("replica.py")), "--primary", db_url],
            capture_output=True,
            text=True,
            check=False,
        )
        if replica.returncode:
            failures.append(
                f"The reports' streaming replica could not be started.\n  {replica.stderr.strip()}"
                "\n  .ci/run allows replication from 127.0.0.1 (scripts/replica.py"
                " --allow-replication), or set REPORTS_DATABASE_URL to a running replica."
            )
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
