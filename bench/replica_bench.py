"""Reports on a replica vs on the primary, under callback load, run by hand:
`.venv/bin/python bench/replica_bench.py [--quick]`.

Prints, in one run, accepted upload callbacks per second on POST /api/oss/callback/ (the same
pre-signed callbacks and gunicorn as bench/uploads_bench.py) in four conditions, alternated for
--rounds rounds so that each round's four share the machine's conditions:

1. alone: no reports running (the baseline);
2. reports on the primary: --streams report loops (the staff API's queries and the dashboard's,
   through reports_reading(), as deployed without REPORTS_DATABASE_URL);
3. reports on the replica, same host: the same loops with REPORTS_DATABASE_URL set to a streaming
   replica made by scripts/replica.py on this machine;
4. reports on the replica, its CPU yielded: the replica's processes reniced to 19, a stand-in for
   the replica's own host (on this 2-core machine the replica and the primary share the CPUs,
   which a real deployment does not).

For each: callbacks per second, the ratio to "alone" (target: >= 0.9x with the reports on the
replica), and how many reports the loops completed per minute. Wall-clock rates move with
whatever else runs on a shared machine, so CPU time read from /proc is printed too: per
callback (gunicorn's workers and their primary backends), and the CPUs the report queries took
on the primary and on the replica (0.00 on the primary is the point of the replica). Also the
machine's load average.

It creates its own database (BENCH_DATABASE_URL, default .../appserver_replica_bench) with
--uploads seeded rows (reports/seeding.py), its own replica (port --replica-port, a temporary
directory; the primary must allow replication, see scripts/replica.py), the emulator and
gunicorn on free ports, and removes them all at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DB = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appserver_replica_bench"
)
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
CONDITIONS = ("alone", "primary", "replica", "replica-yielded")
LABELS = {
    "alone": "alone (no reports)",
    "primary": "reports on the primary",
    "replica": "reports on the replica, same host",
    "replica-yielded": "reports on the replica, its CPU yielded (nice 19)",
}


# --- the report loop (a child process: its queries, not its Python, are the load) -------------


def report_loop(target: str, stop_file: Path) -> None:
    """Run the reports one after another until stop_file appears; print how many ran.

    Niced: this process stands for the staff's browsers and for whatever renders their pages,
    not for the database work being compared; its Python must not take the CPUs the callbacks'
    server needs (it is the same in every condition, only its queries' server changes)."""
    os.nice(19)
    import django

    django.setup()
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from reports.routing import reports_reading
    from reports.selectors import REPORTS, ReportFilters, dashboard_figures

    if target == "primary":
        settings.REPORTS_DATABASE = None
    today = timezone.localdate()
    last_30 = ReportFilters(date_from=today - timedelta(days=29), date_to=today)
    work = [
        lambda: dashboard_figures(days=30),
        lambda: REPORTS["uploads-daily"].run(filters=ReportFilters()),
        lambda: REPORTS["content-types"].run(filters=ReportFilters()),
        lambda: REPORTS["top-uploaders"].run(filters=ReportFilters()),
        lambda: REPORTS["usage"].run(filters=last_30),
        lambda: REPORTS["refusals"].run(filters=ReportFilters()),
        lambda: REPORTS["credentials-daily"].run(filters=ReportFilters()),
    ]
    done = 0
    while not stop_file.exists():
        with reports_reading() as source:
            assert source.replica == (target != "primary")
            work[done % len(work)]()
        done += 1
        if done == 1:
            (stop_file.parent / f"started-{os.getpid()}").touch()
    print(done, flush=True)


# --- the run -----------------------------------------------------------------------------------


def psql(sql: str) -> None:
    parts = urlsplit(BENCH_DB)
    subprocess.run(
        [
            *("psql", "-q", "-h", parts.hostname, "-p", str(parts.port or 5432)),
            *("-U", parts.username or "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1"),
            *("-c", sql),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def replica_pids(datadir: Path) -> list[int]:
    from bench.uploads_bench import _children

    postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
    return [postmaster, *_children(postmaster)]


def renice(datadir: Path, value: int) -> None:
    # Backends fork from the postmaster and inherit its niceness; running ones are set too.
    pids = replica_pids(datadir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, pid, value)
    # With the kernel's autogroups (sched_autogroup_enabled) niceness only ranks processes of one
    # session, and pg_ctl starts the replica in a session of its own: set the group's niceness.
    with contextlib.suppress(OSError):
        Path(f"/proc/{pids[0]}/autogroup").write_text(str(value))


def replica_caught_up(replica_url: str) -> None:
    import psycopg

    with psycopg.connect(BENCH_DB) as primary, psycopg.connect(replica_url) as replica:
        lsn = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        deadline = time.monotonic() + 300
        while not replica.execute(
            "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the replica did not catch up in 5 minutes"
            time.sleep(0.1)


REPORTS_APP = "replica-bench-reports"  # the report loops' application_name (PGAPPNAME)


def backends(url: str, *, reports: bool) -> list[int]:
    """PIDs of the server's backends for the bench database: the report loops' or the others."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for pid, app in rows if (app == REPORTS_APP) == reports]


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    from bench.uploads_bench import _cpu_seconds

    return _cpu_seconds(pids)


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def start_reports(target: str, streams: int, env: dict, tmp: Path) -> tuple[list, Path]:
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    stop_file = run_dir / "stop"
    loops = [
        subprocess.Popen(
            [sys.executable, __file__, "--report-loop", target, "--stop-file", str(stop_file)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(streams)
    ]
    deadline = time.monotonic() + 300
    while len(list(run_dir.glob("started-*"))) < streams:  # each has finished one report
        assert all(p.poll() is None for p in loops), "a report loop failed"
        assert time.monotonic() < deadline, "the report loops did not start"
        time.sleep(0.1)
    return loops, stop_file


def stop_reports(loops: list, stop_file: Path) -> int:
    stop_file.touch()
    done = 0
    for loop in loops:
        out, _ = loop.communicate(timeout=600)
        assert loop.returncode == 0, f"a report loop failed ({loop.returncode})"
        done += int(out.strip().splitlines()[-1])
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=500_000, help="rows the reports read")
    parser.add_argument("--callbacks", type=int, default=1200, help="callbacks per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--streams", type=int, default=2, help="report loops at once")
    parser.add_argument("--replica-port", type=int, default=5434)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--report-loop", choices=("primary", "replica"), help=argparse.SUPPRESS)
    parser.add_argument("--stop-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report_loop:
        report_loop(args.report_loop, args.stop_file)
        return
    if args.quick:
        args.uploads, args.callbacks, args.rounds = 50_000, 300, 1

    from bench import uploads_bench as ub

    db_name = urlsplit(BENCH_DB).path.lstrip("/")
    psql(f'DROP DATABASE IF EXISTS "{db_name}"')
    psql(f'CREATE DATABASE "{db_name}"')
    tmp = Path(tempfile.mkdtemp(prefix="replica-bench-"))
    tmp.chmod(0o755)  # the replica's directory inside belongs to the postgres user
    replica_dir = tmp / "replica"
    emu_port, app_port = ub.free_port(), ub.free_port()
    emulator_url = f"http://127.0.0.1:{emu_port}"
    env = {
        **os.environ,
        "DATABASE_URL": BENCH_DB,
        "REDIS_URL": BENCH_REDIS,
        "CACHE_KEY_PREFIX": "replica-bench",
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
    env.pop("REPORTS_DATABASE_URL", None)  # the callbacks' server never needs it
    os.environ.update(env)
    children: list[subprocess.Popen] = []
    replica_made = False
    results: dict[str, list[tuple[float, float]]] = {c: [] for c in CONDITIONS}
    loads = []
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
        import django

        django.setup()
        from django.core.management import call_command

        from reports.seeding import seed_demo_data

        call_command("migrate", verbosity=0)
        print(f"seeding {args.uploads:,} uploads ...", flush=True)
        seed_demo_data(uploads=args.uploads, seed=1)
        with django.db.connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        made = subprocess.run(
            [
                *(sys.executable, str(ROOT / "scripts" / "replica.py"), "--primary", BENCH_DB),
                *("--port", str(args.replica_port), "--dir", str(replica_dir)),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        replica_made = True
        replica_url = made.stdout.strip()
        report_env = {**env, "REPORTS_DATABASE_URL": replica_url, "PGAPPNAME": REPORTS_APP}
        print(f"replica: {replica_url}", flush=True)

        gunicorn = ub.start_gunicorn(app_port, env, True)
        children.append(gunicorn)
        warm = 20
        requests_, _ = ub.build_callbacks(
            warm + args.rounds * len(CONDITIONS) * args.callbacks, tmp, emulator_url
        )
        ub.load(app_port, requests_[:warm])
        batches = iter(
            requests_[warm + i * args.callbacks : warm + (i + 1) * args.callbacks]
            for i in range(args.rounds * len(CONDITIONS))
        )
        for r in range(args.rounds):
            for condition in CONDITIONS:
                replica_caught_up(replica_url)
                renice(replica_dir, 19 if condition == "replica-yielded" else 0)
                loops, stop_file = [], None
                if condition != "alone":
                    target = "primary" if condition == "primary" else "replica"
                    loops, stop_file = start_reports(target, args.streams, report_env, tmp)
                # CPU seconds (from /proc: what the processes used, whatever else runs on this
                # shared machine): the callbacks' side (gunicorn's workers and their primary
                # backends) and the report loops' backends on the primary and on the replica.
                callback_pids = ub._children(gunicorn.pid) + backends(BENCH_DB, reports=False)
                on_primary, on_replica = (
                    backends(BENCH_DB, reports=True),
                    backends(replica_url, reports=True),
                )
                before = [cpu_seconds(p) for p in (callback_pids, on_primary, on_replica)]
                started = time.monotonic()
                seconds, statuses, bodies = ub.load(app_port, next(batches))
                after = [cpu_seconds(p) for p in (callback_pids, on_primary, on_replica)]
                elapsed = time.monotonic() - started
                assert set(statuses) == {200}, set(statuses)
                assert all(b'"ok":true' in b.replace(b" ", b"") for b in bodies)
                rate = len(statuses) / seconds
                per_callback_ms = spent(before[0], after[0]) / len(statuses) * 1000
                primary_share = spent(before[1], after[1]) / elapsed  # CPUs the reports took
                replica_share = spent(before[2], after[2]) / elapsed
                reports_per_min = 0.0
                if loops:
                    reports_per_min = stop_reports(loops, stop_file) / elapsed * 60
                results[condition].append(
                    (rate, reports_per_min, per_callback_ms, primary_share, replica_share)
                )
                loads.append(os.getloadavg()[0])
                print(
                    f"  round {r + 1}: {LABELS[condition]:52s} {rate:7.1f} callbacks/s"
                    f", {per_callback_ms:5.2f} ms CPU per callback"
                    + (
                        f", {reports_per_min:6.1f} reports/min using {primary_share:.2f} CPUs"
                        f" on the primary and {replica_share:.2f} on the replica"
                        if loops
                        else ""
                    ),
                    flush=True,
                )
    finally:
        for child in children:
            ub.stop(child)
        if replica_made:
            subprocess.run(
                [
                    *(sys.executable, str(ROOT / "scripts" / "replica.py"), "--stop"),
                    *("--port", str(args.replica_port), "--dir", str(replica_dir)),
                ],
                check=False,
            )
        from django.db import connections

        connections.close_all()
        psql(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)
        with_lock = replica_dir.with_name(replica_dir.name + ".lock")
        with_lock.unlink(missing_ok=True)

    alone = statistics.fmean(one[0] for one in results["alone"])
    print()
    print(
        f"{args.uploads:,} uploads seeded; {args.streams} report loops; gunicorn {ub.WORKERS}"
        f" workers x {ub.THREADS} threads; load loop {ub.CONCURRENCY} threads;"
        f" {args.callbacks} callbacks x {args.rounds} rounds per condition;"
        f" load average during the run {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} CPUs"
    )
    cpu_alone = statistics.fmean(one[2] for one in results["alone"])
    for condition in CONDITIONS:
        rate, per_min, per_cb, primary, replica = (
            statistics.fmean(one[i] for one in results[condition]) for i in range(5)
        )
        line = (
            f"{LABELS[condition]:52s} {rate:7.1f} callbacks/s | ratio to alone {rate / alone:.2f}x"
        )
        if condition.startswith("replica"):
            line += " (target >= 0.90x)"
        line += f" | CPU per callback {per_cb:.2f} ms ({per_cb / cpu_alone:.2f}x)"
        if condition != "alone":
            line += (
                f" | {per_min:6.1f} reports/min, their queries using {primary:.2f} CPUs on the"
                f" primary and {replica:.2f} on the replica"
            )
        print(line)


if __name__ == "__main__":
    main()
