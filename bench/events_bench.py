"""Events benchmark, run by hand: `.venv/bin/python bench/events_bench.py [--quick]`.

Prints, in one run:

1. Accepted callbacks per second on POST /api/oss/callback/ (pre-signed callbacks of pre-issued
   sts tickets, HeadObject check on, as bench/uploads_bench.py drives them) with one active
   webhook endpoint and `manage.py deliver_events` running (posting every upload.accepted to a
   local receiver), against the same with the worker paused (SIGSTOP). Rounds alternate the two
   sides; between them the worker drains what the other side left, unmeasured. Target: >= 0.9x.
   Also the server CPU (gunicorn + PostgreSQL, the worker's backend included) per callback on
   each side, which the load of a shared machine does not distort as it does rates.
   Every accepted callback writes its event in both sides (the outbox is part of the callback);
   what differs is the worker and the receiver competing for the machine and the database.
2. Delivery latency, p50 and p99, from the event's time (taken just before the callback's
   statement commits) to its receipt by the receiver, with callbacks sent at a steady 200/s.

Own PostgreSQL database (BENCH_DATABASE_URL, default .../appserver_e_bench), the emulator,
gunicorn, the worker and the receiver as child processes on free ports; the database is
dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appserver_e_bench")

from bench import uploads_bench as ub  # noqa: E402  (after BENCH_DATABASE_URL is set)

RATE = 200  # events per second for the latency measurement


def receiver_main(port: int, out: str) -> None:
    """The receiving backend, in a process of its own: a minimal asyncio HTTP/1.1 server (it
    stands for a backend on another machine, so it should cost this one little) that answers
    204 at once and keeps, per event, the seconds from its created_at to its arrival; written
    to `out` on SIGTERM."""
    import asyncio

    latencies: dict[str, float] = {}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                arrived = time.time()
                event = json.loads(body)
                created = datetime.fromisoformat(event["created_at"].replace("Z", "+00:00"))
                latencies.setdefault(event["id"], arrived - created.timestamp())
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, done.set)
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        async with server:
            await done.wait()
        Path(out).write_text(json.dumps(latencies))

    asyncio.run(main())


def paced(port: int, requests_: list, rate: float) -> None:
    """Send request i at start + i/rate (8 threads), as traffic arrives, not as fast as can be."""
    import http.client

    start = time.perf_counter() + 0.2
    index = iter(range(len(requests_)))
    lock = threading.Lock()
    failures: list[int] = []

    def worker() -> None:
        while True:
            with lock:
                i = next(index, None)
            if i is None:
                return
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            method, path, headers, body = requests_[i]
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status != 200:
                failures.append(response.status)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]


def start_worker(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "deliver_events"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def drain(timeout: float = 300) -> None:
    """Wait until every event is dispatched and delivered."""
    from django.db import connection

    from events.models import Delivery, Event

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (
            not Event.objects.filter(dispatched=False).exists()
            and not Delivery.objects.exclude(state=Delivery.State.DELIVERED).exists()
        ):
            return
        connection.close()
        time.sleep(0.2)
    raise RuntimeError("the worker did not catch up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callbacks", type=int, default=600, help="callbacks per measurement")
    parser.add_argument("--rounds", type=int, default=6, help="without/with pairs")
    parser.add_argument("--seconds", type=float, default=15, help="latency run length")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.callbacks, args.rounds, args.seconds = 300, 2, 3

    db_name = urlsplit(ub.BENCH_DB).path.lstrip("/")
    ub.psql(f'DROP DATABASE IF EXISTS "{db_name}"')
    ub.psql(f'CREATE DATABASE "{db_name}"')
    tmp = Path(tempfile.mkdtemp(prefix="events-bench-"))
    emu_port, app_port, hook_port = ub.free_port(), ub.free_port(), ub.free_port()
    emulator_url = f"http://127.0.0.1:{emu_port}"
    env = {
        **os.environ,
        "DATABASE_URL": ub.BENCH_DB,
        "REDIS_URL": ub.BENCH_REDIS,
        "CACHE_KEY_PREFIX": "events-bench",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "OSS_ENDPOINT": emulator_url,
        "STS_ENDPOINT": emulator_url,
        "OSS_CALLBACK_URL": f"http://127.0.0.1:{app_port}/api/oss/callback/",
        "OSS_CALLBACK_KEY_URL_PREFIXES": emulator_url + "/_emulator/",
        "UPLOAD_QUOTA_OBJECTS": "100000000",
        "UPLOAD_QUOTA_BYTES": str(10**15),
        "THROTTLE_TICKETS": "1000000/min",
        "EVENTS_ALLOW_PRIVATE_ADDRESSES": "true",
        "DJANGO_SETTINGS_MODULE": "appserver.settings",
    }
    os.environ.update(env)
    children: list[subprocess.Popen] = []
    latencies_file = tmp / "latencies.json"
    try:
        emu = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", str(emu_port), "--data-dir", str(tmp)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        children.append(emu)
        ub.wait_http(emu_port, "/_emulator/callback-public-key.pem")
        receiver = subprocess.Popen(
            [sys.executable, __file__, "--receiver", str(hook_port), str(latencies_file)],
            cwd=ROOT,
        )
        children.append(receiver)

        import django

        django.setup()
        from django.core.management import call_command

        from events.services import endpoint_create

        call_command("migrate", verbosity=0)
        endpoint_create(url=f"http://127.0.0.1:{hook_port}/hook", name="bench")
        gunicorn = ub.start_gunicorn(app_port, env, True)
        children.append(gunicorn)

        warm = 20
        n_latency = int(args.seconds * RATE)
        requests_, _ = ub.build_callbacks(
            warm + 2 * args.rounds * args.callbacks + n_latency, tmp, emulator_url
        )
        ub.load(app_port, requests_[:warm])  # public key fetched, connections warm
        worker = start_worker(env)
        children.append(worker)
        drain()
        rounds = []
        cursor = warm
        for r in range(args.rounds):
            # Without: the worker paused (SIGSTOP: it takes no CPU and makes no query; the
            # endpoint stays and events wait in the outbox). Pausing rather than restarting
            # lets the sides alternate quickly on a machine whose load drifts.
            drain()
            worker.send_signal(signal.SIGSTOP)
            batch = requests_[cursor : cursor + args.callbacks]
            cursor += args.callbacks
            without, app_wo, db_wo = ub._measure(app_port, batch, gunicorn.pid)
            worker.send_signal(signal.SIGCONT)
            drain()  # what the other side left, unmeasured
            batch = requests_[cursor : cursor + args.callbacks]
            cursor += args.callbacks
            with_, app_w, db_w = ub._measure(app_port, batch, gunicorn.pid)
            drain()
            print(
                f"  round {r + 1}: without {without:7.1f}/s, with endpoint + worker "
                f"{with_:7.1f}/s -> {with_ / without:.2f}x",
                flush=True,
            )
            rounds.append((without, with_, app_wo + db_wo, app_w + db_w))
        refused = [b for b in ub.measure_bodies if b'"ok":true' not in b.replace(b" ", b"")]
        assert not refused, refused[:2]

        # Latency: a steady 200 callbacks/s with the worker running.
        latency_batch = requests_[cursor : cursor + n_latency]
        from django.db import connection

        from events.models import Event

        connection.close()
        first_latency_event = Event.objects.order_by("-id").values_list("id", flat=True).first()
        started = time.perf_counter()
        paced(app_port, latency_batch, RATE)
        sent_rate = len(latency_batch) / (time.perf_counter() - started)
        drain()
        measured = {
            str(uid)
            for uid in Event.objects.filter(id__gt=first_latency_event or 0).values_list(
                "uid", flat=True
            )
        }
        ub.stop(worker)
        children.remove(worker)
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=30)
        children.remove(receiver)
        received = json.loads(latencies_file.read_text())
        latencies = sorted(received[i] for i in measured if i in received)
        assert len(latencies) == len(measured) == n_latency, (len(latencies), len(measured))
    finally:
        for child in children:
            ub.stop(child)
        from django.db import connections

        connections.close_all()
        ub.psql(f'DROP DATABASE IF EXISTS "{db_name}"')

    without = statistics.fmean(r[0] for r in rounds)
    with_ = statistics.fmean(r[1] for r in rounds)
    print()
    print(
        f"gunicorn: {ub.WORKERS} workers x {ub.THREADS} threads; load loop: {ub.CONCURRENCY} "
        "threads; one deliver_events worker; receiver (asyncio) answers 204 at once"
    )
    print(
        f"callbacks without worker: {without:8.1f} accepted/s | with endpoint + worker: "
        f"{with_:8.1f} accepted/s | ratio {with_ / without:.2f}x (target >= 0.9x)"
        f" | median of per-round ratios {statistics.median(r[1] / r[0] for r in rounds):.2f}x"
    )
    print(
        "    server CPU per callback (median, gunicorn + PostgreSQL): "
        f"without {statistics.median(r[2] for r in rounds):.2f} ms, "
        f"with {statistics.median(r[3] for r in rounds):.2f} ms"
    )
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"delivery latency at {sent_rate:.0f} callbacks/s ({len(latencies)} events): "
        f"p50 {p50 * 1000:.1f} ms | p99 {p99 * 1000:.1f} ms | max {latencies[-1] * 1000:.1f} ms"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--receiver":
        receiver_main(int(sys.argv[2]), sys.argv[3])
    else:
        main()
