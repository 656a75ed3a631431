"""The databases (the primary, the embedded SQLite's tuning, the reports' read replica) and the
cache: DATABASE_URL, REPORTS_DATABASE_URL and REDIS_URL, and what each of them implies."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from appserver.conf.environment import BASE_DIR, env, required

DATABASE_URL = required(
    "DATABASE_URL", local_default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"
)
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The same backend, with a health check that polls the socket instead of a round trip,
    # and server-side binding for the hot statements that ask for it (appserver/db/base.py).
    DATABASES["default"]["ENGINE"] = "appserver.db"
    _prepare_threshold = env.str("DB_PREPARE_THRESHOLD", default="5").strip()
    if _prepare_threshold and not _prepare_threshold.isdigit():
        raise ImproperlyConfigured(
            "DB_PREPARE_THRESHOLD must be a whole number, or empty to never prepare statements."
        )
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        int(_prepare_threshold) if _prepare_threshold else None
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    # The embedded default takes concurrent writers (the upload page sends files in parallel):
    # a transaction takes the write lock when it begins, not when it first writes (two deferred
    # transactions upgrading their read locks deadlock, and SQLite fails one at once with
    # "database is locked" whatever the timeout); writers then wait their turn for up to
    # SQLITE_BUSY_TIMEOUT_SECONDS; WAL lets reads go on while one writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.float("SQLITE_BUSY_TIMEOUT_SECONDS", default=20.0),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
# Reports (the staff API under /api/reports/, the admin dashboard, `manage.py report`) read from
# this PostgreSQL streaming replica when it is set, so they never load the primary; writes never
# go there (reports/routing.py). Unset: they read the primary.
REPORTS_DATABASE_URL = env.str("REPORTS_DATABASE_URL", default="")
REPORTS_DATABASE: str | None = None  # the alias reports read from; None: the primary
DATABASE_ROUTERS = ["reports.routing.ReportsRouter"]
if REPORTS_DATABASE_URL:
    _replica = env.db_url_config(REPORTS_DATABASE_URL)
    if DATABASES["default"]["ENGINE"] != "appserver.db" or _replica["ENGINE"] != (
        "django.db.backends.postgresql"
    ):
        raise ImproperlyConfigured(
            "REPORTS_DATABASE_URL is a PostgreSQL replica of DATABASE_URL: both must be postgres://."
        )
    _replica.update(
        ENGINE="appserver.db.replica",  # read-only sessions, and nothing created in tests
        CONN_MAX_AGE=DATABASES["default"]["CONN_MAX_AGE"],
        CONN_HEALTH_CHECKS=True,
    )
    # A replica that does not answer fails the report in seconds (503), not a worker's timeout.
    _replica.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    _replica["OPTIONS"]["options"] = "-c default_transaction_read_only=on"
    DATABASES["reports"] = _replica
    REPORTS_DATABASE = "reports"
# A report answers 503 (Retry-After) rather than show figures older than this: the replica's
# replay lag, shown on the dashboard (reports/routing.py).
REPORTS_MAX_STALENESS_SECONDS = env.float("REPORTS_MAX_STALENESS_SECONDS", default=60.0)

REDIS_URL = required("REDIS_URL", local_default="")
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default="appserver")
if REDIS_URL:
    CACHES = {
        "default": {
            # Django's backend, reusing its redis-py client (appserver/cache.py).
            "BACKEND": "appserver.cache.RedisCache",
            # Sentinel and cluster locations list several hosts with commas, which Django would
            # take for read replicas: one URL in a list (appserver/cache.py reads the schemes).
            "LOCATION": (
                [REDIS_URL]
                if REDIS_URL.split("://", 1)[0].endswith(("+sentinel", "+cluster"))
                else REDIS_URL
            ),
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "TIMEOUT": 300,
            # Bounded so a stalled Redis degrades requests instead of hanging workers.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "appserver",
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }
