"""Request-metrics overhead, run by hand: `.venv/bin/python bench/metrics_bench.py [--quick]`.

The same request (GET of a bare view that answers a constant, the cheapest endpoint there can
be, so the middleware's share is as large as it can get) through Django's WSGI handler with the
project's whole middleware stack, with and without appserver.metrics' RequestMetricsMiddleware,
in one process, rounds alternating. Printed: microseconds per request for both, their ratio and
the difference, in the two storage modes of prometheus-client:

- multiprocess (gunicorn: PROMETHEUS_MULTIPROC_DIR set, values written to mmap'ed files);
- single process (runserver, tests: values in memory).

Each mode runs in a child process of its own (prometheus-client picks its storage at import).
No database or cache is touched: the bare view needs neither, and nothing else is measured.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
METRICS_MIDDLEWARE = "appserver.metrics.middleware.RequestMetricsMiddleware"


def bare_view(request):
    from django.http import HttpResponse

    return HttpResponse(b"ok", content_type="text/plain")


def __getattr__(name: str):
    # This module is also the URLconf of the measured handler.
    if name == "urlpatterns":
        from django.urls import path

        return [path("bench/bare/", bare_view, name="bench-bare")]
    raise AttributeError(name)


def _environ() -> dict:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/bench/bare/",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "localhost",
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def _handler(with_metrics: bool):
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    configured = list(settings.MIDDLEWARE)
    assert configured[0] == METRICS_MIDDLEWARE
    settings.MIDDLEWARE = configured if with_metrics else configured[1:]
    try:
        return WSGIHandler()  # reads MIDDLEWARE now, once
    finally:
        settings.MIDDLEWARE = configured


def _round(handler, requests: int) -> float:
    def start_response(status, headers, exc_info=None):
        return None

    template = _environ()
    started = time.perf_counter()
    for _ in range(requests):
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(b"")
        body = handler(environ, start_response)
        body.close()
    return (time.perf_counter() - started) / requests * 1e6


def child(requests: int, rounds: int) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appserver.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.ROOT_URLCONF = __name__
    settings.DEBUG = False
    without = _handler(with_metrics=False)
    with_ = _handler(with_metrics=True)
    _round(without, 500), _round(with_, 500)  # warm up: imports, route and label caches
    timings: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(rounds):
        timings["without"].append(_round(without, requests))
        timings["with"].append(_round(with_, requests))
    result = {side: statistics.median(values) for side, values in timings.items()}
    result["recording"] = _recording_alone(requests * rounds)
    return result


def _recording_alone(requests: int) -> float:
    """What the middleware adds to a request that has been seen before: the children lookup,
    one counter increment and one histogram observation (per request, in microseconds)."""
    from appserver.metrics.definitions import REQUEST_DURATION, REQUESTS

    key = ("bench/bare/", "GET", 200)
    pair = (REQUESTS.labels("/b", "GET", "200"), REQUEST_DURATION.labels("/b", "GET"))
    children = {key: pair}
    started = time.perf_counter()
    for _ in range(requests):
        pair = children.get(key)
        pair[0].inc()
        pair[1].observe(0.0002)
    return (time.perf_counter() - started) / requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    requests, rounds = (2_000, 3) if args.quick else (20_000, 7)
    if args.child:
        print(json.dumps(child(requests, rounds)))
        return 0
    load = os.getloadavg()[0]
    print(f"Request-metrics overhead: {rounds} alternating rounds of {requests} requests each")
    print(f"(median per request), 1-minute load average {load:.2f} on {os.cpu_count()} CPUs.\n")
    print(f"{'mode':<16}{'without':>12}{'with':>12}{'ratio':>8}{'added':>12}{'recording':>12}")
    for mode in ("multiprocess", "single"):
        env = {**os.environ, "APP_ENV": "local", "PYTHONHASHSEED": "0"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with tempfile.TemporaryDirectory(prefix="metrics-bench-") as directory:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = directory
            out = subprocess.run(
                [sys.executable, __file__, "--child", *(["--quick"] if args.quick else [])],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        without, with_ = result["without"], result["with"]
        print(
            f"{mode:<16}{without:>10.1f}us{with_:>10.1f}us{with_ / without:>8.3f}"
            f"{with_ - without:>10.1f}us{result['recording']:>10.2f}us"
        )
    print(
        "\nwithout/with: the whole request through the WSGI handler and every middleware;"
        "\nrecording: the metrics middleware's own work alone (lookup, increment, observation)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
