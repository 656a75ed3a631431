"""Sweep benchmark, run by hand: `.venv/bin/python bench/sweep_bench.py [--rounds N]`.

Prints, in one run, the time of one `sweep_uploads` pass (uploads.sweep.uploads_sweep) when
1,000 users were active since the last sweep (write credentials granted ten minutes ago, two
uploads each, their objects stored) and the database holds

- 1,000 users in all (everyone active), and
- 100,000 users in all (99,000 idle: credentials that expired a day ago, one upload and its
  object each, so the bucket and the uploads table are ~35x larger too).

Target: <= 1.5x. Both sides are measured alternately, --rounds times each, in two databases of
their own (BENCH_DATABASE_URL with the suffixes _small and _big, dropped at the end) against one
emulator in this process whose objects are planted through its storage API; the sweep's own
ListObjects and HeadObjects go over HTTP with oss2, as in production. Every pass starts from the
same mark, finds the same 1,000 users and nothing to repair.
"""

from __future__ import annotations

import argparse
import io
import os
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
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appserver_sweep_bench"
)
ACTIVE = 1_000


def _names() -> tuple[str, str, str]:
    parts = urlsplit(BENCH_DB)
    base = parts.path.lstrip("/")
    return parts._replace(path="/postgres").geturl(), base + "_small", base + "_big"


def databases(action: str) -> None:
    import psycopg

    dsn, small, big = _names()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in (small, big):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            if action == "create":
                conn.execute(f'CREATE DATABASE "{name}"')


def use(name: str) -> None:
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = name


def seed(name: str, *, users: int, emu, bucket: str, prefix_of) -> None:
    """`users` users; the first ACTIVE of them active (two uploads each), the rest idle (one)."""
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from accounts.models import User
    from emulator.oss.storage import ObjectRecord
    from tokens.models import CredentialGrant
    from uploads.models import StorageUsage, Upload

    use(name)
    call_command("migrate", verbosity=0)
    now = timezone.now()
    User.objects.bulk_create(
        [User(username=f"{name}-{i}", password=make_password(None)) for i in range(users)],
        batch_size=5000,
    )
    everyone = list(User.objects.order_by("id").values_list("id", "public_id"))
    active, idle = everyone[:ACTIVE], everyone[ACTIVE:]
    grants = [
        CredentialGrant(
            user_id=uid,
            scope="readwrite",
            bucket=bucket,
            prefix=prefix_of(pid),
            policy_sha256="0" * 64,
            access_key_id=f"STS.{uid}",
            expiration=now + timedelta(minutes=50) if i < ACTIVE else now - timedelta(days=1),
        )
        for i, (uid, pid) in enumerate(everyone)
    ]
    CredentialGrant.objects.bulk_create(grants, batch_size=5000)
    past = now - (timedelta(minutes=10))
    CredentialGrant.objects.filter(user_id__in=[u for u, _ in idle]).update(
        created_at=now - timedelta(days=2)
    )
    CredentialGrant.objects.filter(user_id__in=[u for u, _ in active]).update(created_at=past)

    blob_etag = {}
    objects = [(uid, f"{prefix_of(pid)}2026/11/{n}.jpg") for uid, pid in active for n in (1, 2)]
    objects += [(uid, f"{prefix_of(pid)}2025/01/1.jpg") for uid, pid in idle]
    stored_at = emu.clock.now() - 3600

    def plant(key: str) -> None:
        blob = emu.storage.receive(io.BytesIO(key.encode()))
        blob_etag[key] = (blob.size, blob.md5.hex().upper())
        record = ObjectRecord(
            key=key,
            size=blob.size,
            etag=blob.md5.hex().upper(),
            crc64=blob.crc64,
            content_type="image/jpeg",
            last_modified=stored_at,
            object_type="Normal",
            segments=(),
        )
        emu.storage.put(bucket, record, blob)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(plant, [key for _, key in objects], chunksize=500))
    Upload.objects.bulk_create(
        [
            Upload(
                owner_id=uid,
                bucket=bucket,
                key=key,
                filename="x.jpg",
                size=blob_etag[key][0],
                etag=blob_etag[key][1],
                content_type="image/jpeg",
                verified_at=now,
            )
            for uid, key in objects
        ],
        batch_size=5000,
    )
    sizes: dict[int, list[int]] = {}
    for uid, key in objects:
        sizes.setdefault(uid, []).append(blob_etag[key][0])
    StorageUsage.objects.bulk_create(
        [
            StorageUsage(user_id=uid, bytes_used=sum(s), objects_used=len(s))
            for uid, s in sizes.items()
        ],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"    {name}: {users:,} users, {len(objects):,} objects and rows", flush=True)


def one_pass(name: str) -> tuple[float, object]:
    from django.utils import timezone

    from uploads.models import SweepMark
    from uploads.sweep import MARK, uploads_sweep

    use(name)
    now = timezone.now()
    SweepMark.objects.update_or_create(
        name=MARK, defaults={"swept_from": now - timedelta(minutes=1), "finished_at": now}
    )
    started = time.perf_counter()
    result = uploads_sweep()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=99_000, help="Idle users on the big side.")
    parser.add_argument("--keep", action="store_true", help="Keep the bench databases.")
    args = parser.parse_args()
    _dsn, small, big = _names()
    databases("create")
    os.environ["DATABASE_URL"] = BENCH_DB.rsplit("/", 1)[0] + "/" + small
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appserver.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings

    from emulator import Emulator, EmulatorConfig

    shm = Path("/dev/shm")
    data_dir = Path(tempfile.mkdtemp(prefix="sweep-bench-", dir=shm if shm.is_dir() else None))
    emu = Emulator(EmulatorConfig(port=0, data_dir=data_dir)).start()
    try:
        settings.OSS_ENDPOINT = emu.endpoint
        settings.SWEEP_GRACE_SECONDS = 0
        bucket = settings.OSS_BUCKET

        def prefix_of(public_id: str) -> str:
            return settings.STORAGE_PREFIX_TEMPLATE.format(user_public_id=public_id)

        print("[1] seeding ...", flush=True)
        seed(small, users=ACTIVE, emu=emu, bucket=bucket, prefix_of=prefix_of)
        seed(big, users=ACTIVE + args.idle, emu=emu, bucket=bucket, prefix_of=prefix_of)
        one_pass(small), one_pass(big)  # warm: connections, clients, caches
        times: dict[str, list[float]] = {small: [], big: []}
        for r in range(args.rounds):
            for name in (small, big):
                seconds, result = one_pass(name)
                assert result.users == ACTIVE, result
                assert result.objects_listed == 2 * ACTIVE, result
                assert result.adopted + result.repaired + result.refused + result.missing == 0
                times[name].append(seconds)
            print(
                f"    round {r + 1}: {ACTIVE:,} of {ACTIVE:,}: {times[small][-1] * 1000:7.0f} ms,"
                f" {ACTIVE:,} of {ACTIVE + args.idle:,}: {times[big][-1] * 1000:7.0f} ms",
                flush=True,
            )
        a, b = statistics.median(times[small]), statistics.median(times[big])
        print(
            f"[1] sweep_uploads, {ACTIVE:,} active users (median of {args.rounds}):\n"
            f"    of {ACTIVE:,} users:   {a * 1000:7.0f} ms\n"
            f"    of {ACTIVE + args.idle:,} users: {b * 1000:7.0f} ms\n"
            f"    ratio {b / a:.2f}x (target <= 1.5x)"
        )
    finally:
        from django.db import connection

        connection.close()
        emu.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        if not args.keep:
            databases("drop")
            print("bench databases dropped")


if __name__ == "__main__":
    main()
