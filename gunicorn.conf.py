"""Gunicorn settings, all overridable from the environment (used by `make run` and the image).

Gunicorn's own error and access logs go through the same formatter as the app's, so with
LOG_FORMAT=json (the production default) every line on stdout is one JSON object; access lines
carry the request id the app answered with (X-Request-ID), so they join the app's lines.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import tempfile

_production = os.environ.get("APP_ENV", "local") == "production"
_format = os.environ.get("LOG_FORMAT", "json" if _production else "text")

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread" if threads > 1 else "sync"
# OSS gives an upload callback 5 seconds in all; nothing this server does should take longer
# than STS's bounded timeout, so a stuck worker is recycled well before clients give up.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "0"))
# The app is imported once in the master and its workers fork from it: a worker (re)starts in
# milliseconds instead of importing Django again (about 2 s of CPU each), and the imported code
# is shared between workers. Safe here: loading the app opens no connection (Django connects
# per thread on first use; redis-py's pools reconnect in a forked child), and a deploy starts
# new processes rather than reloading code in place with HUP.
preload_app = os.environ.get("GUNICORN_PRELOAD", "1") != "0"
# Behind a load balancer: trust X-Forwarded-* only from the addresses given.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
# No runtime control socket: several servers on one host (make run, benchmarks) would share
# its default path, and nothing here uses it.
control_socket_disable = True
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# The text form of an access line (LOG_FORMAT=text). With LOG_FORMAT=json the formatter builds
# the JSON object from gunicorn's atoms instead (appserver.logging.GunicornJsonFormatter). The
# query string is left out on purpose: signed URLs and tokens must not reach the logs.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms [%({x-request-id}o)s]'

# Prometheus metrics in multiprocess mode (appserver/metrics/): every worker writes its values to
# files in one directory and a scrape served by any worker adds them up. The directory must be
# set before the workers import the app, and emptied when the server starts (values of a
# previous run would be counted again). Unset: a private temporary one, removed at exit.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
_metrics_dir_ours = not _metrics_dir
if _metrics_dir_ours:
    _metrics_dir = tempfile.mkdtemp(prefix="appserver-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def on_starting(server) -> None:
    os.makedirs(_metrics_dir, exist_ok=True)
    for entry in os.scandir(_metrics_dir):
        if entry.is_file() and entry.name.endswith(".db"):
            os.remove(entry.path)


def pre_fork(server, worker) -> None:
    # Everything the master imported (the whole app, with preload_app) becomes permanent for the
    # garbage collector: a worker's full collections no longer walk those ~130,000 objects (about
    # 60 ms each, measured: one every ~2,000 ticket requests, the spikes of the p99) nor write
    # to their pages, which stay shared with the master instead of being copied into each worker.
    gc.freeze()


def post_worker_init(worker) -> None:
    # The same for what the worker loaded itself (all of the app with GUNICORN_PRELOAD=0).
    gc.freeze()


def child_exit(server, worker) -> None:
    # Its counters stay (a sum must not drop when a worker is recycled); only its live gauges go.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _metrics_dir_ours:
        with contextlib.suppress(OSError):
            shutil.rmtree(_metrics_dir)


logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "appserver.logging.GunicornJsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": _format,
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": loglevel.upper(), "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
