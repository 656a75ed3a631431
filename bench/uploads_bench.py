"""Uploads benchmark, run by hand: `.venv/bin/python bench/uploads_bench.py [--quick]`.

Prints, in one run:

1. Accepted callbacks per second on POST /api/oss/callback/ (each a valid, pre-signed callback
   for its own pre-issued ticket, exactly as the emulator/OSS renders and signs it) against a bare
   Django view served by the same gunicorn (same workers, same middleware), both driven by the
   same bounded load loop on 127.0.0.1. Measured with the HeadObject check on (one round trip to
   the emulator per callback) and off (the endpoint's own cost). Target: >= 0.5x the bare view.
   Each mode runs --rounds bare/floor/callback triples alternately; the rates are means over
   them. The floor is a bare view that also makes the round trips no callback can avoid: one
   SELECT 1 and, in the mode with the check, one HeadObject through the server's own OSS client.
   It bounds what any implementation of the endpoint could reach on this machine.
   A third mode measures the callbacks of url tickets (presigned PUT URLs) with the check on, as
   deployed: their facts come from a template the app cannot edit, so they make no HeadObject.
   Target: >= 0.5x the bare view.
2. The median latency of the first page of GET /api/uploads/ for a user with 1,000 uploads when
   the table holds 10,000 rows and then 1,000,000 rows (bulk-inserted with generate_series).
   Target: <= 1.3x.

It creates its own PostgreSQL database (BENCH_DATABASE_URL, default .../appserver_u_bench), runs
the emulator and gunicorn as child processes on free ports, and drops the database at the end.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DB = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appserver_u_bench"
)
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
# The project's own gunicorn defaults (gunicorn.conf.py): 2 workers x 4 threads (gthread).
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
THREADS = int(os.environ.get("BENCH_THREADS", "4"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))


# --- gunicorn entry point (this module is also the bench server's URLconf) ---------------------


def bare_view(request):
    from django.http import JsonResponse

    return JsonResponse({"ok": True})


def floor_view(request):
    """The bare view plus the round trips every accepted callback makes: a HeadObject of the
    object named by ?key= (the check on) and one database round trip (the check off too)."""
    from django.db import connection
    from django.http import JsonResponse

    from uploads import oss

    key = request.GET.get("key")
    info = oss.oss_head_object(key=key) if key else None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return JsonResponse({"ok": True, "size": info.size if info else None})


def __getattr__(name: str):
    # Django reads `urlpatterns` (and optional handlers) from the URLconf module; built lazily so
    # that running this file as a script does not need Django configured at import.
    if name == "urlpatterns":
        from django.urls import path

        from appserver import urls

        return [
            path("bench/bare/", bare_view),
            path("bench/floor/", floor_view),
            *urls.urlpatterns,
        ]
    if name.startswith("handler"):
        from appserver import urls

        return getattr(urls, name)
    raise AttributeError(name)


def wsgi():
    """gunicorn 'bench.uploads_bench:wsgi()': the app server plus one bare view."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appserver.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.ROOT_URLCONF = "bench.uploads_bench"
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


# --- helpers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers on port {port}")


def psql(sql: str, db: str = "postgres") -> None:
    parts = urlsplit(BENCH_DB)
    subprocess.run(
        [
            "psql",
            "-q",
            "-h",
            parts.hostname,
            "-p",
            str(parts.port or 5432),
            "-U",
            parts.username or "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        check=True,
        timeout=600,
        stdout=subprocess.DEVNULL,
    )


def load(
    port: int, requests_: list[tuple[str, str, dict, bytes]]
) -> tuple[float, list[int], list[bytes]]:
    """Send the requests with CONCURRENCY threads; returns (seconds, statuses, bodies)."""
    statuses: list[int] = [0] * len(requests_)
    bodies: list[bytes] = [b""] * len(requests_)
    index = iter(range(len(requests_)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(index, None)
            if i is None:
                return
            method, path, headers, body = requests_[i]
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            bodies[i] = response.read()
            statuses[i] = response.status
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, statuses, bodies


def latency_median(port: int, path: str, headers: dict, n: int) -> float:
    return one_at_a_time(port, [("GET", path, headers, b"")] * n)


# --- the run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callbacks", type=int, default=1500, help="callbacks per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="bare/callback pairs per mode")
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.callbacks, args.rounds, args.big_rows = 200, 1, 50_000

    db_name = urlsplit(BENCH_DB).path.lstrip("/")
    psql(f'DROP DATABASE IF EXISTS "{db_name}"')
    psql(f'CREATE DATABASE "{db_name}"')
    tmp = Path(tempfile.mkdtemp(prefix="uploads-bench-"))
    emu_port, app_port = free_port(), free_port()
    emulator_url = f"http://127.0.0.1:{emu_port}"
    env = {
        **os.environ,
        "DATABASE_URL": BENCH_DB,
        "REDIS_URL": BENCH_REDIS,
        "CACHE_KEY_PREFIX": "uploads-bench",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "OSS_ENDPOINT": emulator_url,
        "STS_ENDPOINT": emulator_url,
        "OSS_CALLBACK_URL": f"http://127.0.0.1:{app_port}/api/oss/callback/",
        "OSS_CALLBACK_KEY_URL_PREFIXES": emulator_url + "/_emulator/",
        "UPLOAD_QUOTA_OBJECTS": "100000000",
        "UPLOAD_QUOTA_BYTES": str(10**15),
        "THROTTLE_TICKETS": "1000000/min",
        "DJANGO_SETTINGS_MODULE": "appserver.settings",
    }
    os.environ.update(env)
    children: list[subprocess.Popen] = []
    try:
        emu = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", str(emu_port), "--data-dir", str(tmp)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        children.append(emu)
        wait_http(emu_port, "/_emulator/callback-public-key.pem")

        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        results = {}
        for label, head_check, mode in _MODES:
            gunicorn = start_gunicorn(app_port, env, head_check)
            children.append(gunicorn)
            try:
                print(f"{label}:", flush=True)
                results[(label, head_check, mode)] = bench_callbacks(
                    args.callbacks,
                    args.rounds,
                    app_port,
                    tmp,
                    emulator_url,
                    gunicorn.pid,
                    head_check,
                    mode,
                )
            finally:
                stop(gunicorn)
                children.remove(gunicorn)
        gunicorn = start_gunicorn(app_port, env, True)
        children.append(gunicorn)
        small, big = bench_list(app_port, args.big_rows)
    finally:
        for child in children:
            stop(child)
        from django.db import connections

        connections.close_all()
        psql(f'DROP DATABASE IF EXISTS "{db_name}"')

    print()
    print(
        f"gunicorn: {WORKERS} workers x {THREADS} threads; "
        f"load loop: {CONCURRENCY} threads on 127.0.0.1, a new connection per request"
    )
    for (label, head_check, mode), figures in results.items():
        bare, callbacks = figures["rate"]
        one_bare, one_cb = figures["one"]
        (app_bare, db_bare), (app_cb, db_cb) = figures["cpu"]
        print(
            f"callbacks ({label}): {callbacks:8.1f} accepted/s | bare view: {bare:8.1f} req/s"
            f" | ratio {callbacks / bare:.2f}x (target >= 0.5x)"
            f" | median of per-round ratios {figures['ratio_median']:.2f}x"
        )
        heads = head_check and mode == "sts"
        trips = "one HeadObject + one SELECT 1" if heads else "one SELECT 1"
        print(
            f"    floor (bare view + {trips}): {figures['floor']:8.1f} req/s"
            f" | ratio {figures['floor'] / bare:.2f}x: the round trips alone,"
            " before any of the endpoint's own work"
        )
        print(
            f"    one at a time: {one_cb * 1000:.1f} ms vs {one_bare * 1000:.1f} ms"
            f" | server CPU per request (median): callback {app_cb:.2f} ms app"
            f" + {db_cb:.2f} ms PostgreSQL"
            f", bare {app_bare:.2f} ms app + {db_bare:.2f} ms PostgreSQL"
            f" | CPU ratio {(app_bare + db_bare) / (app_cb + db_cb):.2f}x"
        )
    print(
        f"GET /api/uploads/ first page, user with 1,000 uploads: median {small * 1000:.2f} ms "
        f"at 10,000 rows | {big * 1000:.2f} ms at {args.big_rows + 10_000:,} rows | "
        f"ratio {big / small:.2f}x (target <= 1.3x)"
    )


# (label, UPLOAD_CALLBACK_HEAD_CHECK, ticket mode)
_MODES = (
    ("sts tickets, HeadObject check on", True, "sts"),
    ("sts tickets, HeadObject check off", False, "sts"),
    ("url tickets (no HeadObject needed), check on", True, "url"),
)


def start_gunicorn(port: int, env: dict, head_check: bool) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "bench.uploads_bench:wsgi()",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(WORKERS),
            "--threads",
            str(THREADS),
            "--worker-class",
            "gthread" if THREADS > 1 else "sync",
            "--log-level",
            "warning",
            "--chdir",
            str(ROOT),
        ],
        cwd=ROOT,
        env={**env, "UPLOAD_CALLBACK_HEAD_CHECK": "true" if head_check else "false"},
        stdout=subprocess.DEVNULL,
    )
    wait_http(port, "/bench/bare/", deadline=120.0)  # a loaded machine starts slowly
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return cpu


def _server_pids(gunicorn_pid: int) -> tuple[list[int], list[int]]:
    """(gunicorn workers, PostgreSQL backends serving the bench database)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        backends = [row[0] for row in cursor.fetchall()]
    return _children(gunicorn_pid), backends


def _measure(port: int, requests_: list, gunicorn_pid: int) -> tuple[float, float, float]:
    """(requests per second, app CPU ms per request, PostgreSQL CPU ms per request).

    CPU time does not depend on what else runs on this shared machine; wall-clock rates do."""
    workers, backends = _server_pids(gunicorn_pid)
    before_app, before_db = _cpu_seconds(workers), _cpu_seconds(backends)
    seconds, statuses, bodies = load(port, requests_)
    assert set(statuses) == {200}, set(statuses)
    workers, backends = _server_pids(gunicorn_pid)
    after_app, after_db = _cpu_seconds(workers), _cpu_seconds(backends)
    app = sum(v - before_app.get(pid, 0.0) for pid, v in after_app.items())
    db = sum(v - before_db.get(pid, 0.0) for pid, v in after_db.items())
    n = len(requests_)
    measure_bodies.extend(bodies)
    return n / seconds, app / n * 1000, db / n * 1000


measure_bodies: list[bytes] = []


def bench_callbacks(
    n: int,
    rounds: int,
    port: int,
    data_dir: Path,
    emulator_url: str,
    gunicorn_pid: int,
    head_check: bool,
    mode: str = "sts",
) -> dict:
    """Time the bare view, the floor view and the callback endpoint under the same load loop,
    alternately for `rounds` rounds (this machine's speed drifts; each round's three share
    its conditions); also the median latency of one request at a time, and the server CPU per
    request."""
    warm, single = 20, 50
    requests_, stored_key = build_callbacks(
        rounds * n + warm + single, data_dir, emulator_url, mode=mode
    )
    bare = [("GET", "/bench/bare/", {}, b"")] * n
    heads = head_check and mode == "sts"
    floor_path = "/bench/floor/" + (f"?key={quote(stored_key)}" if heads else "")
    floor = [("GET", floor_path, {}, b"")] * n
    # Warm-up of all three; the first callbacks also let each worker fetch and cache the
    # public key.
    load(port, bare[:100] + floor[:100] + requests_[:warm])
    rounds_ = []
    for r in range(rounds):
        rate_bare, app_bare, db_bare = _measure(port, bare, gunicorn_pid)
        rate_floor, _, _ = _measure(port, floor, gunicorn_pid)
        measure_bodies.clear()
        batch = requests_[warm + r * n : warm + (r + 1) * n]
        rate_cb, app_cb, db_cb = _measure(port, batch, gunicorn_pid)
        refused = [b for b in measure_bodies if b'"ok":true' not in b.replace(b" ", b"")]
        assert not refused, refused[:2]
        print(
            f"  round {r + 1}: bare {rate_bare:7.1f} req/s, floor {rate_floor:7.1f} req/s"
            f" ({rate_floor / rate_bare:.2f}x), callbacks {rate_cb:7.1f}/s"
            f" -> {rate_cb / rate_bare:.2f}x",
            flush=True,
        )
        rounds_.append(((rate_bare, app_bare, db_bare), (rate_cb, app_cb, db_cb), rate_floor))
    one_bare = one_at_a_time(port, bare[:single])
    one_cb = one_at_a_time(port, requests_[warm + rounds * n :])

    def mean(side: int, i: int) -> float:
        return statistics.fmean(one[side][i] for one in rounds_)

    def median(side: int, i: int) -> float:
        return statistics.median(one[side][i] for one in rounds_)

    return {
        "rate": (mean(0, 0), mean(1, 0)),
        "floor": statistics.fmean(one[2] for one in rounds_),
        "ratio_median": statistics.median(cb[0] / b[0] for b, cb, _ in rounds_),
        "one": (one_bare, one_cb),
        "cpu": ((median(0, 1), median(0, 2)), (median(1, 1), median(1, 2))),
    }


def one_at_a_time(port: int, requests_: list) -> float:
    times = []
    for method, path, headers, body in requests_:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        started = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - started)
        conn.close()
        assert response.status == 200, response.status
    return statistics.median(times)


def build_callbacks(
    n: int, data_dir: Path, emulator_url: str, *, mode: str = "sts"
) -> tuple[list, str]:
    """Issue n tickets of `mode`, store their objects in the emulator, and pre-sign their
    callbacks as OSS would render and sign them; also returns one stored key (for the floor
    view)."""
    import base64
    import hashlib

    import oss2
    from django.conf import settings

    from accounts.models import User
    from emulator.callbacks import (
        CallbackSigner,
        ObjectFacts,
        parse_callback,
        render_body,
        string_to_sign,
    )
    from uploads.services import ticket_issue

    # Spread over many users, as real traffic is: one user's callbacks serialise on their
    # quota row by design, which is not what this measures.
    stamp = time.monotonic_ns()
    users = [User.objects.create(username=f"cb{stamp}-{u}") for u in range(50)]
    signer = CallbackSigner(data_dir / "callback-key.pem")  # the emulator's own key
    key_url = base64.b64encode(f"{emulator_url}/_emulator/callback-public-key.pem".encode())
    bucket = oss2.Bucket(
        oss2.make_auth(settings.ALIBABA_ACCESS_KEY_ID, settings.ALIBABA_ACCESS_KEY_SECRET, "v4"),
        emulator_url,
        settings.OSS_BUCKET,
        region=settings.OSS_REGION,
    )
    data = b"0123456789" * 10
    callback_url = settings.OSS_CALLBACK_URL
    requests_ = []
    for i in range(n):
        issued = ticket_issue(
            user=users[i % len(users)],
            filename="b.txt",
            size=len(data),
            content_type="text/plain",
            mode=mode,
        )
        put = bucket.put_object(issued.ticket.key, data, headers={"Content-Type": "text/plain"})
        spec = parse_callback(
            issued.headers["x-oss-callback"], issued.headers["x-oss-callback-var"]
        )
        facts = ObjectFacts(
            bucket=settings.OSS_BUCKET,
            key=issued.ticket.key,
            etag=put.etag.upper(),
            size=len(data),
            mime_type="text/plain",
            crc64=str(put.crc or ""),
            content_md5="",
            client_ip="127.0.0.1",
            request_id=f"BENCH{i}",
            operation="PutObject",
            image=None,
            owner="1",
            requester="STS.bench",
        )
        body = render_body(spec, facts)
        headers = {
            "authorization": base64.b64encode(
                signer.sign(string_to_sign(callback_url, body))
            ).decode(),
            "x-oss-pub-key-url": key_url.decode(),
            "content-type": spec.body_type,
            "content-md5": base64.b64encode(hashlib.md5(body).digest()).decode(),  # noqa: S324
            "x-oss-bucket": settings.OSS_BUCKET,
            "user-agent": "aliyun-oss-callback",
        }
        requests_.append(("POST", "/api/oss/callback/", headers, body))
    return requests_, issued.ticket.key


def bench_list(port: int, big_rows: int) -> tuple[float, float]:
    from django.db import connection
    from rest_framework_simplejwt.tokens import RefreshToken

    from accounts.models import User

    user = User.objects.create(username="lister")
    token = str(RefreshToken.for_user(user).access_token)
    headers = {"Authorization": f"Bearer {token}"}

    def insert(count: int, owner_sql: str, start: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO uploads_upload (owner_id, bucket, key, filename, size, etag, crc64,
                    content_type, image_width, image_height, image_format, metadata,
                    oss_request_id, status, created_at, updated_at)
                SELECT {owner_sql}, 'app-uploads', 'users/bench/' || g || '.png', g || '.png',
                    1000 + g, '', '', 'image/png', 640, 480, 'png', '{{}}'::jsonb, '', 'active',
                    now() - random() * interval '30 days', now()
                FROM generate_series(%s, %s) AS g
                """,  # noqa: S608 - owner_sql is built here from integers, not input
                [start, start + count - 1],
            )

    # Through the ORM: a user row has columns the model computes (the username's skeleton).
    others = [User(username=f"other{g}") for g in range(1, 1000)]
    for other in others:
        other.set_unusable_password()
    User.objects.bulk_create(others)
    first_other = min(other.pk for other in others)
    # The user's 1,000 uploads interleaved in time with 9,000 of 999 other users.
    insert(1000, str(user.pk), 1)
    insert(9000, f"{first_other} + (g %% 999)", 1001)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE uploads_upload")
    path = "/api/uploads/"
    latency_median(port, path, headers, 20)  # warm-up
    small = latency_median(port, path, headers, 200)

    insert(big_rows, f"{first_other} + (g %% 999)", 10_001)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE uploads_upload")
        cursor.execute("SELECT count(*) FROM uploads_upload")
        total = cursor.fetchone()[0]
    print(f"uploads_upload now holds {total:,} rows")
    latency_median(port, path, headers, 20)
    big = latency_median(port, path, headers, 200)
    return small, big


if __name__ == "__main__":
    main()
