"""Benchmark: the project's hot endpoints against a minimal DRF + simplejwt service, one run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/appserver_bench \
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/framework_bench.py

(`make bench` runs it, then the other benches.) On this machine, all on 127.0.0.1:

1. the anchor (bench/anchor/anchor.py: no middleware, Django's stock user model, its own
   database ``<DATABASE_URL's name>_anchor``) and the project (``appserver.wsgi``, DEBUG off,
   LOG_FORMAT=json, the production logging) each under gunicorn with the project's
   gunicorn.conf.py, 2 sync workers, access lines written to a file for both;
2. a local STS + OSS emulator; N users, each with 60 image uploads and login sessions;
3. every endpoint is warmed (credentials cached, connections open), then ``wrk -t2 -c16 --latency``
   runs each endpoint in turn, for R rounds of S seconds, so load from other processes hits all
   alike;
4. per endpoint: mean req/s, median p50 and p99 latency, CPU per request of the gunicorn workers
   (from /proc; PostgreSQL and Redis are left out: on a shared machine their CPU is everyone's),
   the ratio to its anchor with the target, and the ratio to its floor: the same guarantees at
   their least cost on the anchor's stack (bench/anchor/floors.py). Below the floor's own ratio
   no stack can go while keeping them; between the two is the cost of this project's stack.

The project's endpoints keep every check in the path (suspension, throttles with rates no bench
reaches, quotas set high so the reservations written by the tickets run never hit them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import requests

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.credentials_bench import (  # noqa: E402
    EmulatorProcess,
    cpu_seconds,
    ensure_database,
    free_port,
    wait_http,
)

PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).parent / "gunicorn")

# (name, server, method, path, anchor it is compared with, target ratio or None: report only,
# the floor it is compared with: bench/anchor/floors.py)
ENDPOINTS = [
    ("anchor plain JsonResponse", "anchor", "GET", "/plain/", None, None, None),
    ("anchor DRF stateless JWT", "anchor", "GET", "/stateless/", None, None, None),
    ("anchor DRF JWT + user SELECT", "anchor", "GET", "/dbauth/", None, None, None),
    ("floor of credentials", "anchor", "GET", "/floor/credentials/", "stateless", None, None),
    ("floor of tickets", "anchor", "POST", "/floor/tickets/", "dbauth", None, None),
    ("floor of the list (50 items)", "anchor", "GET", "/floor/uploads/", "dbauth", None, None),
    (
        "GET /api/sts/credentials/",
        "app",
        "GET",
        "/api/sts/credentials/",
        "stateless",
        0.8,
        "floor of credentials",
    ),
    (
        "POST /api/uploads/tickets/",
        "app",
        "POST",
        "/api/uploads/tickets/",
        "dbauth",
        0.5,
        "floor of tickets",
    ),
    (
        "GET /api/uploads/ (50 items)",
        "app",
        "GET",
        "/api/uploads/",
        "dbauth",
        0.5,
        "floor of the list (50 items)",
    ),
    ("GET /api/auth/me/", "app", "GET", "/api/auth/me/", "dbauth", None, None),
    ("POST /api/auth/refresh/", "app", "REFRESH", "/api/auth/refresh/", "dbauth", None, None),
]
TICKET_BODY = json.dumps({"filename": "photo.jpg", "size": 123456, "content_type": "image/jpeg"})

# Access tokens rotate over the users; refresh tokens are a pool per wrk thread, each used once:
# the answer's new refresh token goes back into the pool (rotation is one use per token).
WRK_SCRIPT = r"""
local tokens = {%(tokens)s}
local refresh = {%(refresh)s}
local method, path, body = "%(method)s", "%(path)s", %(body)s
local counter = 0
local pool = {}
local threads = 0

function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end

function init(args)
  local per = math.floor(#refresh / 2)
  for i = 1, per do pool[#pool + 1] = refresh[index * per + i] end
end

function request()
  counter = counter + 1
  if method == "REFRESH" then
    local token = table.remove(pool, 1)
    return wrk.format("POST", path, {["Content-Type"] = "application/json"},
      '{"refresh": "' .. token .. '"}')
  end
  local token = tokens[(counter %% #tokens) + 1]
  local headers = {["Authorization"] = "Bearer " .. token}
  if body then headers["Content-Type"] = "application/json" end
  return wrk.format(method, path, headers, body)
end

function response(status, headers, body)
  if method == "REFRESH" then
    local token = string.match(body, '"refresh"%%s*:%%s*"([^"]+)"')
    if token then pool[#pool + 1] = token end
  end
end
"""


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(
    *,
    base: str,
    method: str,
    path: str,
    tokens: list[str],
    refresh: list[str],
    seconds: int,
    connections: int,
) -> dict:
    script = WRK_SCRIPT % {
        "tokens": ", ".join(f'"{t}"' for t in tokens),
        "refresh": ", ".join(f'"{t}"' for t in refresh),
        "method": method,
        "path": path,
        "body": "[[" + TICKET_BODY + "]]" if method == "POST" else "nil",
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        result = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                handle.name,
                base,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        )
    finally:
        os.unlink(handle.name)
    out = result.stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
        "p99": _ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def worker_pids(gunicorn_pid: int) -> list[int]:
    children = Path(f"/proc/{gunicorn_pid}/task/{gunicorn_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def start_gunicorn(app: str, env: dict, log_name: str, extra: list[str]) -> subprocess.Popen:
    log = open(BASE_DIR / "var" / log_name, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [GUNICORN, app, "-c", "gunicorn.conf.py", *extra],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def seed_uploads(user_ids: list[int], per_user: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO uploads_upload (owner_id, bucket, key, filename, size, etag, crc64,
                content_type, image_width, image_height, image_format, metadata,
                oss_request_id, status, created_at, updated_at)
            SELECT u, 'app-uploads', 'users/bench/' || u || '/' || g || '.png', g || '.png',
                1000 + g, '', '', 'image/png', 640, 480, 'png', '{}'::jsonb, '', 'active',
                now() - g * interval '1 minute', now()
            FROM unnest(%s::bigint[]) AS u, generate_series(1, %s) AS g
            """,
            [user_ids, per_user],
        )
        cursor.execute("ANALYZE uploads_upload")


def make_project_users(count: int) -> tuple[list[str], list[str], list[int]]:
    """Bench users (recreated each run): an access token each (from a login session, as the
    app gets them) and 8 more sessions each whose refresh tokens feed the refresh runs."""
    from accounts.models import User
    from accounts.services import session_start

    User.objects.filter(username__startswith="fw-bench-").delete()
    access, refresh, ids = [], [], []
    for number in range(count):
        user = User.objects.create_user(f"fw-bench-{number}", password=None)
        ids.append(user.pk)
        access.append(session_start(user=user)["access"])
        refresh.extend(session_start(user=user)["refresh"] for _ in range(8))
    return access, refresh, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=6, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", default="", help="substring of the endpoints to run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (make bench installs it: apt-get install wrk).")

    database_url = os.environ.get(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appserver_bench"
    )
    if not database_url.startswith("postgres"):
        raise SystemExit("DATABASE_URL must point at PostgreSQL for this benchmark.")
    parsed = urlparse(database_url)
    anchor_url = parsed._replace(path=parsed.path + "_anchor").geturl()
    ensure_database(database_url)
    ensure_database(anchor_url)
    (BASE_DIR / "var").mkdir(exist_ok=True)

    emulator = EmulatorProcess()
    app_port, anchor_port = free_port(), free_port()
    common = {
        **os.environ,
        "APP_ENV": "local",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "1",
    }
    app_env = {
        **common,
        "DJANGO_SETTINGS_MODULE": "appserver.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        # A fresh namespace per run: no flush of anyone's Redis database.
        "CACHE_KEY_PREFIX": f"framework-bench-{os.getpid()}-{int(time.time())}",
        "STS_ENDPOINT": emulator.endpoint,
        "OSS_ENDPOINT": emulator.endpoint,
        "OSS_PUBLIC_ENDPOINT": emulator.endpoint,
        "THROTTLE_CREDENTIALS": "100000000/min",
        "THROTTLE_TICKETS": "100000000/min",
        "UPLOAD_QUOTA_OBJECTS": "1000000000",
        "UPLOAD_QUOTA_BYTES": str(10**18),
        "GUNICORN_BIND": f"127.0.0.1:{app_port}",
        "GUNICORN_ACCESS_LOG": str(BASE_DIR / "var" / "framework_bench_app_access.log"),
    }
    anchor_env = {
        **common,
        "ANCHOR_DATABASE_URL": anchor_url,
        "ANCHOR_REDIS_URL": app_env["REDIS_URL"],
        "ANCHOR_KEY_PREFIX": app_env["CACHE_KEY_PREFIX"] + "-floors",
        "GUNICORN_BIND": f"127.0.0.1:{anchor_port}",
        "GUNICORN_ACCESS_LOG": str(BASE_DIR / "var" / "framework_bench_anchor_access.log"),
    }
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=BASE_DIR,
        env=app_env,
        check=True,
    )
    anchor_tokens = subprocess.run(
        [PYTHON, str(BASE_DIR / "bench" / "anchor" / "anchor.py"), "tokens", str(args.users)],
        env=anchor_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()

    os.environ.update(app_env)  # this process makes the project's users and tokens
    import django

    django.setup()
    from django.db import connection

    app_tokens, refresh_tokens, user_ids = make_project_users(args.users)
    seed_uploads(user_ids, 60)
    connection.close()

    app = start_gunicorn("appserver.wsgi", app_env, "framework_bench_app.log", [])
    anchor = start_gunicorn(
        "anchor:application",
        anchor_env,
        "framework_bench_anchor.log",
        ["--pythonpath", str(BASE_DIR / "bench" / "anchor")],
    )
    servers = {
        "app": (f"http://127.0.0.1:{app_port}", app),
        "anchor": (f"http://127.0.0.1:{anchor_port}", anchor),
    }
    endpoints = [e for e in ENDPOINTS if args.only in e[0] or e[1] == "anchor"]
    results: dict[str, list[dict]] = {e[0]: [] for e in endpoints}
    try:
        wait_http(servers["app"][0] + "/healthz")
        wait_http(servers["anchor"][0] + "/plain/")
        session = requests.Session()
        for name, server, method, path, *_ in endpoints:  # warm every path on both workers
            base = servers[server][0]
            tokens = anchor_tokens if server == "anchor" else app_tokens
            if method == "REFRESH":
                continue
            for token in tokens * 2:
                response = session.request(
                    method,
                    base + path,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                    data=TICKET_BODY if method == "POST" else None,
                    timeout=30,
                )
                if response.status_code >= 300:
                    raise SystemExit(f"warm-up {name}: {response.status_code} {response.text}")
        load = os.getloadavg()
        print(
            f"wrk -t2 -c{args.connections} --latency, {args.rounds} rounds x {args.seconds} s, "
            f"gunicorn 2 sync workers each (gunicorn.conf.py, DEBUG off, JSON logs), PostgreSQL + "
            f"Redis local, {args.users} users; load average at start "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        for round_number in range(args.rounds):
            for name, server, method, path, *_ in endpoints:
                base, process = servers[server]
                pids = worker_pids(process.pid)
                before = cpu_seconds(pids)
                refresh_pool = refresh_tokens
                result = run_wrk(
                    base=base,
                    method=method,
                    path=path,
                    tokens=anchor_tokens if server == "anchor" else app_tokens,
                    refresh=refresh_pool,
                    seconds=args.seconds,
                    connections=args.connections,
                )
                if method == "REFRESH":
                    # The pool moved on: log in anew for the next round (used tokens are dead).
                    refresh_tokens = _fresh_refresh_tokens(len(refresh_tokens))
                result["cpu_ms"] = (cpu_seconds(pids) - before) * 1000 / max(result["requests"], 1)
                results[name].append(result)
                print(
                    f"  round {round_number + 1} {name:<30} {result['rate']:8.1f} req/s  "
                    f"p50 {result['p50']:6.2f} ms  p99 {result['p99']:7.2f} ms  "
                    f"CPU {result['cpu_ms']:.2f} ms/req  non-2xx {result['non_2xx']}"
                    + (
                        f"  socket errors {result['socket_errors']}"
                        if result["socket_errors"]
                        else ""
                    )
                )
        load = os.getloadavg()
    finally:
        stop(app)
        stop(anchor)
        emulator.stop()

    summary = {
        name: {
            "rate": statistics.mean(r["rate"] for r in rs),
            "p50": statistics.median(r["p50"] for r in rs),
            "p99": statistics.median(r["p99"] for r in rs),
            "cpu_ms": statistics.median(r["cpu_ms"] for r in rs),
        }
        for name, rs in results.items()
    }
    anchors = {
        "stateless": summary["anchor DRF stateless JWT"],
        "dbauth": summary["anchor DRF JWT + user SELECT"],
    }
    print()
    print(f"{'endpoint':<31} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms':>7}  ratio")
    for name, _server, _, _, anchor_name, target, floor in endpoints:
        row = summary[name]
        line = (
            f"{name:<31} {row['rate']:8.1f} {row['p50']:7.2f} {row['p99']:7.2f} "
            f"{row['cpu_ms']:7.2f}"
        )
        if anchor_name:
            ratio = row["rate"] / anchors[anchor_name]["rate"]
            cpu_ratio = anchors[anchor_name]["cpu_ms"] / row["cpu_ms"]
            line += f"  {ratio:.2f}x {anchor_name} anchor (CPU {cpu_ratio:.2f}x)"
            if target is not None:
                line += f", target >= {target:.1f}: {'met' if ratio >= target else 'NOT met'}"
            if floor is not None:
                line += f"; {row['rate'] / summary[floor]['rate']:.2f}x its floor"
        print(line)
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if any(r["non_2xx"] or r["socket_errors"] for rs in results.values() for r in rs):
        print("WARNING: some responses were not 2xx; see var/framework_bench_*.log")


def _fresh_refresh_tokens(count: int) -> list[str]:
    from django.db import connection

    from accounts.models import User
    from accounts.services import session_start

    users = list(User.objects.filter(username__startswith="fw-bench-"))
    tokens = [session_start(user=users[i % len(users)])["refresh"] for i in range(count)]
    connection.close()
    return tokens


if __name__ == "__main__":
    main()
