"""Benchmark: the STS credentials endpoint on a warm cache vs. a constant DRF endpoint.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/appserver_bench \
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/credentials_bench.py

One run, on this machine, all on 127.0.0.1:

1. a local STS + OSS emulator in a child process (it reports how many AssumeRole calls it got);
2. the database is created if needed and migrated; N users and their JWT access tokens;
3. gunicorn with the project's gunicorn.conf.py, 2 workers (sync unless --threads), settings
   ``bench.settings`` (the app plus ``/bench/baseline/``: the same simplejwt authentication,
   answers a constant), PostgreSQL and Redis from the environment, the same logging for both;
4. one request per user warms the credentials cache; then the load generator (``wrk`` when
   installed, else a bounded loop of threads with ``requests`` sessions) runs baseline and
   credentials alternately (5 rounds of 6 s by default), with the same connections, rotating the
   users' tokens; the figures are the means over the rounds.

Prints both request rates, the ratio (target >= 0.8) and the AssumeRole calls (target: one per
(user, scope) per window, whatever the number of requests). The credentials endpoint keeps its
per-user throttle in the path, with a rate no benchmark reaches: every request makes its one
Redis round trip (count + read the entry), which keeps the rate exact across workers. Last, the
hot path's script is timed on a raw pooled connection and through redis-py's Script.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import requests

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {timeout:.0f} s")


# --- the emulator child ------------------------------------------------------------------------


def emulator_child(port: int) -> None:
    """Runs in the child: serve the emulator; answer each stdin line with the AssumeRole count."""
    sys.path.insert(0, str(BASE_DIR))
    from emulator import Emulator, EmulatorConfig

    emu = Emulator(EmulatorConfig(port=port, data_dir=None)).start()
    print(json.dumps({"endpoint": emu.endpoint}), flush=True)
    for _ in sys.stdin:
        print(json.dumps({"assume_role_calls": emu.sts.assume_role_calls}), flush=True)
    emu.stop()


class EmulatorProcess:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [PYTHON, __file__, "--emulator-child", str(free_port())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=BASE_DIR,
        )
        self.endpoint = json.loads(self.process.stdout.readline())["endpoint"]

    def assume_role_calls(self) -> int:
        self.process.stdin.write("?\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())["assume_role_calls"]

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


# --- setup -------------------------------------------------------------------------------------


def ensure_database(database_url: str) -> None:
    import psycopg

    parsed = urlparse(database_url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def make_users(count: int, prefix: str = "bench-user-") -> list[str]:
    """Bench users (recreated each run) and a fresh access token for each."""
    from rest_framework_simplejwt.tokens import RefreshToken

    from accounts.models import User

    User.objects.filter(username__startswith=prefix).delete()
    tokens = []
    for number in range(count):
        user = User.objects.create_user(f"{prefix}{number}", password=None)
        tokens.append(str(RefreshToken.for_user(user).access_token))
    return tokens


# --- CPU accounting ----------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU time of the processes (Linux /proc), 0 for those gone."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def server_pids(gunicorn_pid: int) -> list[int]:
    """The gunicorn workers and the Redis server: the CPU a request costs on this machine,
    whatever else runs on it (PostgreSQL is left out: other databases share its processes)."""
    children = Path(f"/proc/{gunicorn_pid}/task/{gunicorn_pid}/children").read_text().split()
    redis_pids = subprocess.run(["pgrep", "redis-server"], capture_output=True, text=True).stdout
    return [int(p) for p in children + redis_pids.split()]


# --- load generators ---------------------------------------------------------------------------

WRK_SCRIPT = """
local tokens = {%(tokens)s}
local counter = 0
request = function()
  counter = counter + 1
  local token = tokens[(counter %% #tokens) + 1]
  return wrk.format("GET", "%(path)s", {["Authorization"] = "Bearer " .. token})
end
"""


def run_wrk(base: str, path: str, tokens: list[str], seconds: int, connections: int) -> dict:
    script = WRK_SCRIPT % {"tokens": ", ".join(f'"{t}"' for t in tokens), "path": path}
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
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    latency = re.search(r"Latency\s+(\S+)", out).group(1)
    return {
        "rate": rate,
        "requests": total,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
        "latency_avg": latency,
    }


def run_threads(base: str, path: str, tokens: list[str], seconds: int, connections: int) -> dict:
    deadline = time.monotonic() + seconds
    counts = [0] * connections
    bad = [0] * connections

    def loop(index: int) -> None:
        session = requests.Session()
        number = index
        while time.monotonic() < deadline:
            token = tokens[number % len(tokens)]
            number += 1
            response = session.get(
                base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            counts[index] += 1
            bad[index] += response.status_code != 200

    started = time.monotonic()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=seconds + 30)
    elapsed = time.monotonic() - started
    total = sum(counts)
    return {
        "rate": total / elapsed,
        "requests": total,
        "non_2xx": sum(bad),
        "socket_errors": "",
        "latency_avg": "-",
    }


# --- the rate script: raw pooled connection vs redis-py's Script ----------------------------


def script_call_bench(redis_url: str, calls: int = 4000, rounds: int = 3) -> dict:
    """µs per call of the hot path's one script (count + read the entry), sent straight on a
    pooled connection (what appserver/cache.py did until it had to work on a Redis Cluster)
    and through redis-py's Script (what it does now), alternating rounds on the same Redis."""
    import redis
    from redis.exceptions import NoScriptError

    from appserver.cache import _INCR_WINDOW

    client = redis.Redis.from_url(redis_url)
    prefix = f"credentials-bench-script-{os.getpid()}"
    keys = [f"{prefix}:{{u1}}:counter", f"{prefix}:{{u1}}:entry"]
    client.set(keys[1], "x" * 400, ex=60)  # about the size of a sealed entry
    script = client.register_script(_INCR_WINDOW)
    args = [60_000, 1]

    def raw() -> object:
        pool = client.connection_pool
        connection = pool.get_connection()
        try:
            try:
                connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                return connection.read_response()
            except NoScriptError:
                connection.send_command("EVAL", script.script, len(keys), *keys, *args)
                return connection.read_response()
        finally:
            pool.release(connection)

    def through_script() -> object:
        return script(keys=keys, args=args, client=client)

    # Wall time includes the round trip, which both share and which a loaded machine stretches;
    # the client's CPU time is what the choice changes.
    timings: dict[str, list[tuple[float, float]]] = {"raw": [], "script": []}
    through_script()
    for _ in range(rounds):
        for name, call in (("raw", raw), ("script", through_script)):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                call()
            timings[name].append(
                (
                    (time.perf_counter() - wall) * 1e6 / calls,
                    (time.process_time() - cpu) * 1e6 / calls,
                )
            )
    client.delete(*keys)
    return {
        f"{name}_{kind}": statistics.median(t[index] for t in values)
        for name, values in timings.items()
        for index, kind in enumerate(("wall", "cpu"))
    }


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emulator-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=6, help="per measurement")
    # Short alternating runs: load from other processes on the machine hits both sides alike.
    parser.add_argument("--rounds", type=int, default=5, help="baseline/credentials pairs")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--scope", default="readwrite")
    # 1 = sync workers, as `gunicorn appserver.wsgi -w 2`; gunicorn.conf.py's default is 4
    # (gthread), which on 2 cores costs both endpoints GIL hand-offs.
    parser.add_argument("--threads", type=int, default=1, help="per gunicorn worker")
    parser.add_argument("--threads-client", action="store_true", help="do not use wrk")
    args = parser.parse_args()
    if args.emulator_child is not None:
        emulator_child(args.emulator_child)
        return

    database_url = os.environ.get(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appserver_bench"
    )
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if not database_url.startswith("postgres"):
        raise SystemExit("DATABASE_URL must point at PostgreSQL for this benchmark.")
    ensure_database(database_url)

    emulator = EmulatorProcess()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "APP_ENV": "local",
        "DEBUG": "false",
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        # A fresh namespace per run: a cold cache without flushing anyone's Redis database.
        "CACHE_KEY_PREFIX": f"credentials-bench-{os.getpid()}-{int(time.time())}",
        "STS_ENDPOINT": emulator.endpoint,
        "OSS_ENDPOINT": emulator.endpoint,
        "OSS_PUBLIC_ENDPOINT": emulator.endpoint,
        "THROTTLE_CREDENTIALS": "100000000/min",
        "LOG_LEVEL": "WARNING",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": str(args.threads),
        "GUNICORN_ACCESS_LOG": "",
    }
    os.environ.update(env)  # this process reads the same settings (users, tokens, ledger)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=BASE_DIR, env=env, check=True
    )

    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    from django.conf import settings

    from tokens.models import CredentialGrant

    tokens = make_users(args.users)

    (BASE_DIR / "var").mkdir(exist_ok=True)  # absent on a fresh clone until `make run`
    log = open(BASE_DIR / "var" / "credentials_bench_gunicorn.log", "w")  # noqa: SIM115
    gunicorn = subprocess.Popen(
        [str(Path(PYTHON).parent / "gunicorn"), "appserver.wsgi", "-c", "gunicorn.conf.py"],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(base + "/healthz")
        credentials_path = f"/api/sts/credentials/?scope={args.scope}"
        baseline_path = "/bench/baseline/"
        session = requests.Session()
        for token in tokens:  # warm: one AssumeRole per user, and each worker's connections
            for path in (credentials_path, baseline_path):
                response = session.get(
                    base + path, headers={"Authorization": f"Bearer {token}"}, timeout=30
                )
                if response.status_code != 200:
                    raise SystemExit(f"warm-up {path}: {response.status_code} {response.text}")
        calls_after_warmup = emulator.assume_role_calls()

        use_wrk = shutil.which("wrk") is not None and not args.threads_client
        load = run_wrk if use_wrk else run_threads
        generator = "wrk -t2" if use_wrk else f"{args.connections} threads with requests sessions"
        print(
            f"gunicorn 2 workers x {args.threads} threads (gunicorn.conf.py), PostgreSQL + Redis, "
            f"{args.users} users, {args.connections} connections, {args.seconds} s per run, "
            f"load: {generator}, CREDENTIALS_LOCAL_SECONDS={settings.CREDENTIALS_LOCAL_SECONDS:g}"
        )
        results: dict[str, list[dict]] = {"baseline": [], "credentials": []}
        for _ in range(args.rounds):
            for name, path in (("baseline", baseline_path), ("credentials", credentials_path)):
                pids = server_pids(gunicorn.pid)
                cpu_before = cpu_seconds(pids)
                result = load(base, path, tokens, args.seconds, args.connections)
                result["cpu_ms"] = (
                    (cpu_seconds(pids) - cpu_before) * 1000 / max(result["requests"], 1)
                )
                results[name].append(result)
                print(
                    f"  {name:<12} {result['rate']:9.1f} req/s  {result['requests']:7d} requests"
                    f"  non-2xx {result['non_2xx']}  avg latency {result['latency_avg']}"
                    f"  CPU {result['cpu_ms']:.2f} ms/request"
                    + (
                        f"  socket errors {result['socket_errors']}"
                        if result["socket_errors"]
                        else ""
                    )
                )
        calls_total = emulator.assume_role_calls()

        # Cold stampede: fresh users, every connection asking at once on an empty cache, both
        # workers competing: the cross-process single flight must still make one call per user.
        stampede_tokens = make_users(5, prefix="bench-stampede-")
        stampede = load(base, credentials_path, stampede_tokens, 3, args.connections)
        stampede_calls = emulator.assume_role_calls() - calls_total
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        try:
            gunicorn.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gunicorn.kill()
        log.close()
        emulator.stop()

    # After gunicorn stopped: each worker wrote its batched hand-out counts when it exited.
    baseline = sum(r["rate"] for r in results["baseline"]) / args.rounds
    credentials = sum(r["rate"] for r in results["credentials"]) / args.rounds
    served = sum(r["requests"] for r in results["credentials"])
    ledger_served = sum(
        CredentialGrant.objects.filter(user__username__startswith="bench-user-").values_list(
            "times_served", flat=True
        )
    )
    print()
    print(f"baseline (JWT + constant):      {baseline:9.1f} req/s")
    print(f"credentials (warm cache):       {credentials:9.1f} req/s")
    ratio = credentials / baseline
    print(f"ratio:                          {ratio:9.2f}  (target >= 0.80)")
    per_round = sorted(
        c["rate"] / b["rate"]
        for b, c in zip(results["baseline"], results["credentials"], strict=True)
    )
    print(f"median of per-round ratios:     {statistics.median(per_round):9.2f}")
    cpu = {name: statistics.median(r["cpu_ms"] for r in rs) for name, rs in results.items()}
    print(
        f"server CPU per request (workers + redis-server, median): baseline "
        f"{cpu['baseline']:.2f} ms, credentials {cpu['credentials']:.2f} ms -> CPU-bound ratio "
        f"{cpu['baseline'] / cpu['credentials']:.2f} (what the ratio tends to on an idle machine)"
    )
    print(
        f"AssumeRole calls: {calls_after_warmup} during warm-up for {args.users} (user, scope) "
        f"pairs, {calls_total - calls_after_warmup} during {served} loaded requests "
        f"(target: at most one per (user, scope) per window)"
    )
    print(
        f"cold stampede: {stampede['requests']} requests for {len(stampede_tokens)} new users "
        f"in 3 s (non-2xx {stampede['non_2xx']}) -> {stampede_calls} AssumeRole calls "
        f"(target {len(stampede_tokens)})"
    )
    print(
        f"ledger times_served total: {ledger_served} "
        f"(warm-up {len(tokens)} + {served} loaded requests wrk counted + the few in flight "
        "when each run ended)"
    )
    script_us = script_call_bench(redis_url)
    print(
        f"rate script per call (same Redis, median of 3 x 4000): raw pooled connection "
        f"{script_us['raw_cpu']:.0f} us CPU ({script_us['raw_wall']:.0f} us wall), redis-py "
        f"Script {script_us['script_cpu']:.0f} us CPU ({script_us['script_wall']:.0f} us wall)"
        f" -> CPU ratio {script_us['raw_cpu'] / script_us['script_cpu']:.2f}; the difference is "
        f"{(script_us['script_cpu'] - script_us['raw_cpu']) / 10 / cpu['credentials']:.1f}% of "
        "the endpoint's server CPU per request"
    )
    failed = any(r["non_2xx"] for rs in results.values() for r in rs)
    if failed:
        print("WARNING: some responses were not 2xx; see var/credentials_bench_gunicorn.log")


if __name__ == "__main__":
    main()
