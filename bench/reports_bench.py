"""Reports and reconciliation benchmark, run by hand: `.venv/bin/python bench/reports_bench.py`.

Prints, in one run:

1. One user's usage summary (the same user, 500 uploads of their own) when the uploads table
   holds 10,000 rows and then 1,000,000 rows: from the StorageUsage counters (the unfiltered
   report) and summed from the rows (a 30-day filter). Target: <= 2x.
2. Each report's time at 1,000,000 uploads (median of 3), unfiltered, over the last 30 days and
   for one heavy user, with the plan PostgreSQL chose (EXPLAIN ANALYZE: nodes and indexes).
3. Reconciliation of 100,000 objects against the emulator (in memory, in this process): a dry run,
   an --apply with 1% drift each way (500 stray objects adopted from a HEAD, 500 rows whose object
   is gone marked missing), and a second --apply with nothing left to do. Objects per second.
   The objects are planted through the emulator's storage API (no HTTP), the listing and HEADs
   of the run itself go over HTTP with oss2 like in production.

It creates its own PostgreSQL database (BENCH_DATABASE_URL, default .../appserver_reports_bench)
and drops it at the end (--keep leaves it for poking around).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DB = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appserver_reports_bench"
)
RECON_BUCKET = "bench-reconcile"
# What every planted object holds, and so every row of the reconciliation bucket says.
PLANTED = b"x"
PLANTED_ETAG = hashlib.md5(PLANTED).hexdigest().upper()  # noqa: S324 - what OSS calls the ETag


def _admin_dsn(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts._replace(path="/postgres").geturl(), parts.path.lstrip("/")


def create_database() -> None:
    import psycopg

    dsn, name = _admin_dsn(BENCH_DB)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database() -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    dsn, name = _admin_dsn(BENCH_DB)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_django() -> None:
    os.environ["DATABASE_URL"] = BENCH_DB
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appserver.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def progress(stage: str, done: int, total: int) -> None:
    if done >= total:
        print(f"    seeded {stage}: {total:,}", file=sys.stderr)


def median_ms(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # fresh statistics and visibility map (index-only scans)


def captured_sql(fn) -> list[tuple[str, tuple]]:
    from django.db import connection

    queries: list[tuple[str, tuple]] = []

    def wrapper(execute, sql, params, many, context):
        queries.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        fn()
    return queries


def explain(fn) -> list[str]:
    """The plan of the report's main query: node types, indexes and execution time."""
    from django.db import connection

    lines = []
    for sql, params in captured_sql(fn):
        if "accounts_user" in sql and "uploads" not in sql and "tokens" not in sql:
            continue  # the user lookup of a filter
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS OFF) " + sql, params)
            plan = [row[0] for row in cursor.fetchall()]
        nodes = []
        for line in plan:
            m = re.search(
                r"(Index Only Scan|Index Scan|Bitmap Index Scan|Bitmap Heap Scan|Seq Scan|"
                r"Parallel Seq Scan|HashAggregate|GroupAggregate|Sort|Hash Join|Nested Loop)"
                r"(?: using (\w+))?(?: on (\w+))?",
                line,
            )
            if m:
                nodes.append(" ".join(p for p in (m.group(1), m.group(2), m.group(3)) if p))
        exec_ms = next((line.split(":")[1].strip() for line in plan if "Execution" in line), "")
        lines.append(f"{' > '.join(dict.fromkeys(nodes))}  [{exec_ms}]")
    return lines


def usage_probe(probe, days30) -> dict[str, float]:
    from reports.selectors import ReportFilters, report_usage

    counters = ReportFilters(user=probe)
    rows = ReportFilters(user=probe, date_from=days30)
    report_usage(filters=counters)  # warm the cache of plans and pages
    report_usage(filters=rows)
    return {
        "counters": median_ms(lambda: report_usage(filters=counters), 15),
        "rows_30d": median_ms(lambda: report_usage(filters=rows), 15),
        "rows_all": median_ms(
            lambda: report_usage(filters=ReportFilters(user=probe, content_type="image/*")), 15
        ),
    }


def bench_reports(uploads: int) -> None:
    from django.db.models import Count
    from django.utils import timezone

    from accounts.models import User
    from reports.seeding import seed_demo_data
    from reports.selectors import REPORTS, ReportFilters
    from uploads.models import Upload

    small = 10_000
    print(f"[1] seeding {small:,} uploads (incl. the probe user's 500) ...", flush=True)
    t = time.perf_counter()
    seed_demo_data(uploads=small - 500, users=50, seed=1, progress=progress)
    seed_demo_data(uploads=500, users=1, seed=2, progress=progress)
    print(f"    {time.perf_counter() - t:.1f} s")
    probe = User.objects.order_by("-id").first()
    today = timezone.localdate()
    days30 = today - timedelta(days=29)
    analyze()
    at_small = usage_probe(probe, days30)

    more = uploads - small
    print(f"[1] seeding {more:,} more uploads ...", flush=True)
    t = time.perf_counter()
    result = seed_demo_data(uploads=more, users=max(50, more // 200), seed=3, progress=progress)
    took = time.perf_counter() - t
    print(f"    {took:.1f} s ({result.uploads / took:,.0f} uploads/s incl. refusals and grants)")
    analyze()
    at_large = usage_probe(probe, days30)
    total = Upload.objects.count()
    print(f"\n[1] One user's usage summary (probe: 500 own uploads), table {small:,} vs {total:,}")
    print(f"    {'path':<34}{f'{small:,} rows':>16}{f'{total:,} rows':>16}{'ratio':>8}")
    for name, label in (
        ("counters", "counters (no filter)"),
        ("rows_30d", "rows, last 30 days"),
        ("rows_all", "rows, content type image/*"),
    ):
        a, b = at_small[name], at_large[name]
        print(f"    {label:<34}{a:>14.2f}ms{b:>14.2f}ms{b / a:>7.2f}x")

    heavy_id = (
        Upload.objects.values("owner").annotate(n=Count("id")).order_by("-n").first()["owner"]
    )
    heavy = User.objects.get(pk=heavy_id)
    heavy_n = Upload.objects.filter(owner=heavy).count()
    variants = {
        "all": ReportFilters(),
        "30 days": ReportFilters(date_from=days30),
        f"user ({heavy_n:,} rows)": ReportFilters(user=heavy),
        "image/*": ReportFilters(content_type="image/*"),
    }
    print(f"\n[2] Reports at {total:,} uploads (median of 3, ms)")
    print(f"    {'report':<20}" + "".join(f"{v:>22}" for v in variants))
    plans: list[str] = []
    for name, spec in REPORTS.items():
        cells = []
        for label, filters in variants.items():
            used = {
                k
                for k in ("date_from", "date_to", "user", "content_type")
                if getattr(filters, k) is not None
            }
            if used - spec.accepts:
                cells.append(f"{'n/a':>22}")
                continue
            cells.append(f"{median_ms(lambda s=spec, f=filters: s.run(filters=f)):>20.1f}ms")
            if label in ("all", "30 days"):
                for line in explain(lambda s=spec, f=filters: s.run(filters=f)):
                    plans.append(f"    {name} / {label}: {line}")
        print(f"    {name:<20}" + "".join(cells))
    print("\n[2] Plans (EXPLAIN ANALYZE)")
    print("\n".join(plans))


def bench_reconcile(objects: int) -> None:
    from django.conf import settings
    from django.db import connection

    from emulator import Emulator, EmulatorConfig
    from emulator.oss.storage import ObjectRecord
    from reports.reconciliation import reconciliation_run
    from uploads import oss
    from uploads.models import Upload

    drift = objects // 200  # 0.5% stray objects, 0.5% rows without an object
    # On tmpfs when there is one: planting 100,000 objects is then file-system bound no longer.
    shm = Path("/dev/shm")
    data_dir = Path(tempfile.mkdtemp(prefix="reports-bench-", dir=shm if shm.is_dir() else None))
    emu = Emulator(EmulatorConfig(port=0, data_dir=data_dir)).start()
    try:
        settings.OSS_ENDPOINT = emu.endpoint
        settings.OSS_BUCKET = RECON_BUCKET
        settings.RECONCILE_GRACE_SECONDS = 0
        emu.storage.create_bucket(RECON_BUCKET, region=emu.config.region, now=emu.clock.now())
        # The first `objects - drift` active uploads (plus `drift` more rows left without an
        # object) move to the reconciliation bucket, describing what is planted for them below
        # (size, ETag, type): reconcile compares each row with its object, and only the drift
        # is to repair.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE uploads_upload SET bucket = %s, size = %s, etag = %s, content_type = %s"
                " WHERE id IN (SELECT id FROM uploads_upload WHERE status = 'active'"
                " ORDER BY id LIMIT %s)",
                [RECON_BUCKET, len(PLANTED), PLANTED_ETAG, "image/jpeg", objects],
            )
        analyze()
        rows = list(
            Upload.objects.filter(bucket=RECON_BUCKET)
            .order_by("id")
            .values_list("key", "owner__public_id")
        )
        planted = [key for key, _ in rows[: len(rows) - drift]]
        planted += [f"users/{pid}/stray/{i:06d}.jpg" for i, (_, pid) in enumerate(rows[:drift])]
        print(f"\n[3] planting {len(planted):,} objects in the emulator ...", flush=True)
        t = time.perf_counter()
        stored_at = emu.clock.now() - 86400

        def plant(key: str) -> None:
            blob = emu.storage.receive(io.BytesIO(PLANTED))
            template = ObjectRecord(
                key=key,
                size=blob.size,
                etag=blob.md5.hex().upper(),
                crc64=blob.crc64,
                content_type="image/jpeg",
                last_modified=stored_at,
                object_type="Normal",
                segments=(),
            )
            emu.storage.put(RECON_BUCKET, template, blob)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(plant, planted, chunksize=500))
        print(f"    {time.perf_counter() - t:.1f} s")

        print(f"[3] Reconciliation of {len(planted):,} objects ({drift} stray, {drift} missing)")
        # The floor: listing the same keys with the same calls and nothing else.
        t = time.perf_counter()
        listed, marker = 0, ""
        while True:
            page = oss.oss_list_page(prefix="users/", marker=marker, max_keys=1000)
            listed += len(page.objects)
            if not page.truncated:
                break
            marker = page.next_marker
        floor = listed / (time.perf_counter() - t)
        print(f"    {'list only':<12} {time.perf_counter() - t:7.1f} s  {floor:8,.0f} objects/s")
        for label, apply in (("dry run", False), ("apply", True), ("apply again", True)):
            t = time.perf_counter()
            run = reconciliation_run(apply=apply)
            took = time.perf_counter() - t
            rate = run.objects_listed / took
            print(
                f"    {label:<12} {took:7.1f} s  {rate:8,.0f} objects/s ({rate / floor:.2f}x "
                f"list only)  listed {run.objects_listed:,}, rows {run.rows_checked:,}, stray "
                f"{run.stray_objects}, missing {run.missing_objects}, repaired {run.repaired}, "
                f"errors {run.errors}"
            )
    finally:
        emu.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=1_000_000)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="Keep the bench database.")
    args = parser.parse_args()
    create_database()
    try:
        setup_django()
        bench_reports(args.uploads)
        bench_reconcile(min(args.objects, int(args.uploads * 0.9)))
    finally:
        if not args.keep:
            drop_database()
            print("\nbench database dropped")


if __name__ == "__main__":
    main()
