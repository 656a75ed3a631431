"""Image variants benchmark, run by hand: `.venv/bin/python bench/imaging_bench.py [--quick]`.

Prints, in one run:

1. The emulator resizing a 12-megapixel JPEG to 256 px (GET ?x-oss-process=image/resize,w_256
   through oss2): operations per second one at a time and with 4 clients, and the emulator's
   peak RSS over its idle RSS. Beside it, the same work done in this process with Pillow (draft
   decoding, as the emulator does, and a full decode): the floor the emulator's HTTP, storage
   and signature checks add to.
2. GET /api/uploads/ (a page of 50 image uploads) with IMAGE_VARIANTS off ({}) and on (the
   default two variants: 100 signed URLs per page), served by gunicorn, rounds alternated:
   median latency one request at a time and server CPU per request. Target: without/with
   >= 0.8. Also the signing alone (oss_sign_process_urls for 50 keys x 2 variants, in this
   process) as a share of the page's latency: target <= 20%.

It creates its own PostgreSQL database (BENCH_DATABASE_URL, default .../appserver_img_bench),
runs the emulator and gunicorn as child processes on free ports, and drops the database at the
end.
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
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appserver_img_bench"
)

from bench.emulator_bench import peak_rss_mib, rss_mib  # noqa: E402
from bench.uploads_bench import (  # noqa: E402
    BENCH_DB,
    BENCH_REDIS,
    _measure,
    free_port,
    one_at_a_time,
    psql,
    start_gunicorn,
    stop,
    wait_http,
)

RESIZE = "image/resize,w_256"


def photo(width: int = 4000, height: int = 3000) -> bytes:
    """A photo-like 12-megapixel JPEG: gradients plus sensor-like noise, quality 90."""
    from PIL import Image

    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 24)
    im = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def in_process(data: bytes, *, draft: bool) -> None:
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    if draft:
        im.draft(im.mode, (256, 192))
    im = im.resize((256, 192), Image.Resampling.LANCZOS, reducing_gap=3.0)
    im.save(io.BytesIO(), "JPEG", quality=85)


def rate(fn, n: int, clients: int = 1) -> float:
    """Operations per second of fn, run n times over `clients` threads."""
    left = iter(range(n))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if next(left, None) is None:
                    return
            fn()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.perf_counter() - started)


def bench_resize(n: int) -> None:
    import oss2

    from emulator.config import (
        DEFAULT_BUCKET,
        DEFAULT_REGION,
        DEFAULT_ROOT_ACCESS_KEY_ID,
        DEFAULT_ROOT_ACCESS_KEY_SECRET,
    )

    data = photo()
    port = free_port()
    emu = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--memory", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(port, "/_emulator/callback-public-key.pem")
        auth = oss2.make_auth(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET, "v4")
        local = threading.local()

        def bucket() -> oss2.Bucket:
            if not hasattr(local, "bucket"):
                local.bucket = oss2.Bucket(
                    auth, f"http://127.0.0.1:{port}", DEFAULT_BUCKET, region=DEFAULT_REGION
                )
            return local.bucket

        bucket().put_object("bench/photo.jpg", data)
        bucket().get_object("bench/photo.jpg").read()
        idle = rss_mib(emu.pid)

        def resize() -> None:
            body = bucket().get_object("bench/photo.jpg", process=RESIZE).read()
            assert body[:2] == b"\xff\xd8"

        resize()  # warm-up
        one = rate(resize, n)
        four = rate(resize, n, clients=4)
        peak = peak_rss_mib(emu.pid)
        direct_draft = rate(lambda: in_process(data, draft=True), n)
        direct_full = rate(lambda: in_process(data, draft=False), max(3, n // 4))
    finally:
        stop(emu)
    print(f"12-megapixel JPEG ({len(data) / 1e6:.1f} MB, 4000x3000) to 256 px ({RESIZE}):")
    print(
        f"  emulator over HTTP (oss2 get_object process=): {one:6.1f} ops/s one at a time,"
        f" {four:6.1f} ops/s with 4 clients"
    )
    print(
        f"  Pillow in this process, draft decoding:        {direct_draft:6.1f} ops/s"
        f" | ratio emulator/Pillow {one / direct_draft:.2f}x"
    )
    print(
        f"  Pillow in this process, full decode:           {direct_full:6.1f} ops/s"
        f" | draft decoding is {direct_draft / direct_full:.1f}x faster"
    )
    print(
        f"  emulator RSS: {idle:.0f} MiB idle (after storing and reading the original),"
        f" peak {peak:.0f} MiB | +{peak - idle:.0f} MiB for the resizes"
        f" (a full RGB decode alone would be {4000 * 3000 * 3 / 2**20:.0f} MiB per image)"
    )


# --- the list endpoint with and without variants -----------------------------------------------


def seed_page(emulator_url: str) -> dict:
    from django.db import connection
    from rest_framework_simplejwt.tokens import RefreshToken

    from accounts.models import User

    user = User.objects.create(username="gallery")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO uploads_upload (owner_id, bucket, key, filename, size, etag, crc64,
                content_type, image_width, image_height, image_format, metadata,
                oss_request_id, status, created_at, updated_at)
            SELECT %s, 'app-uploads', 'users/' || %s || '/' || g || '.jpg', g || '.jpg',
                3000000 + g, '', '', 'image/jpeg', 4000, 3000, 'jpg', '{}'::jsonb, '', 'active',
                now() - g * interval '1 minute', now()
            FROM generate_series(1, 200) AS g
            """,
            [user.pk, user.public_id],
        )
        cursor.execute("ANALYZE uploads_upload")
    return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}


def sign_page_seconds(n: int) -> float:
    from django.conf import settings

    from uploads import oss

    keys = [f"users/bench/{i}.jpg" for i in range(50)]
    times = []
    for _ in range(n):
        started = time.perf_counter()
        oss.oss_sign_process_urls(keys=keys, processes=settings.IMAGE_VARIANTS)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_list(app_port: int, env: dict, headers: dict, n: int, rounds: int) -> None:
    path = "/api/uploads/?page_size=50"
    figures: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(rounds):
        for variants in (False, True):
            configured = os.environ["IMAGE_VARIANTS"] if variants else "{}"
            variant_env = {**env, "IMAGE_VARIANTS": configured}
            gunicorn = start_gunicorn(app_port, variant_env, True)
            try:
                requests_ = [("GET", path, headers, b"")] * n
                one_at_a_time(app_port, requests_[:20])  # warm-up
                latency = one_at_a_time(app_port, requests_)
                _, app_cpu, db_cpu = _measure(app_port, requests_, gunicorn.pid)
                figures[variants].append((latency, app_cpu + db_cpu))
            finally:
                stop(gunicorn)
    off = statistics.median(latency for latency, _ in figures[False])
    on = statistics.median(latency for latency, _ in figures[True])
    cpu_off = statistics.median(cpu for _, cpu in figures[False])
    cpu_on = statistics.median(cpu for _, cpu in figures[True])
    signing = sign_page_seconds(200)
    print("GET /api/uploads/, a page of 50 image uploads (gunicorn, one request at a time):")
    print(
        f"  median latency: without variants {off * 1000:.2f} ms | with 2 variants"
        f" {on * 1000:.2f} ms | ratio without/with {off / on:.2f}x (target >= 0.8x)"
    )
    print(
        f"  server CPU per request: without {cpu_off:.2f} ms | with {cpu_on:.2f} ms"
        f" | ratio {cpu_off / cpu_on:.2f}x"
    )
    print(
        f"  signing 50 x 2 URLs alone (in this process): {signing * 1000:.2f} ms"
        f" = {signing / on:.0%} of the page's latency (target <= 20%),"
        f" {signing * 1000 / cpu_on:.0%} of its server CPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resizes", type=int, default=40)
    parser.add_argument("--requests", type=int, default=300, help="list requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.resizes, args.requests, args.rounds = 8, 60, 1

    bench_resize(args.resizes)
    print()

    db_name = urlsplit(BENCH_DB).path.lstrip("/")
    psql(f'DROP DATABASE IF EXISTS "{db_name}"')
    psql(f'CREATE DATABASE "{db_name}"')
    emu_port, app_port = free_port(), free_port()
    emulator_url = f"http://127.0.0.1:{emu_port}"
    tmp = Path(tempfile.mkdtemp(prefix="imaging-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": BENCH_DB,
        "REDIS_URL": BENCH_REDIS,
        "CACHE_KEY_PREFIX": "imaging-bench",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "OSS_ENDPOINT": emulator_url,
        "STS_ENDPOINT": emulator_url,
        "OSS_CALLBACK_URL": f"http://127.0.0.1:{app_port}/api/oss/callback/",
        "OSS_CALLBACK_KEY_URL_PREFIXES": emulator_url + "/_emulator/",
        "DJANGO_SETTINGS_MODULE": "appserver.settings",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings

    os.environ["IMAGE_VARIANTS"] = json.dumps(settings.IMAGE_VARIANTS)
    emu = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", str(emu_port), "--data-dir", str(tmp)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(emu_port, "/_emulator/callback-public-key.pem")
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        headers = seed_page(emulator_url)
        bench_list(app_port, env, headers, args.requests, args.rounds)
    finally:
        stop(emu)
        from django.db import connections

        connections.close_all()
        psql(f'DROP DATABASE IF EXISTS "{db_name}"')


if __name__ == "__main__":
    main()
