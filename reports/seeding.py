"""Realistic demo data in bulk: users, uploads, refusals and credential grants.

Used by `manage.py seed_demo_data` (demos) and bench/reports_bench.py (1,000,000 rows). On
PostgreSQL rows go in with COPY, one batch per transaction, so a million rows take well under
a minute; elsewhere with executemany. Every seeded user's StorageUsage counters are then
recomputed from their active rows, so the counters and the rows agree as the callback would
have left them.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import connection, models, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from accounts.models import User
from tokens.models import CredentialGrant
from uploads.models import CallbackRefusal, StorageUsage, Upload

Progress = Callable[[str, int, int], None]

# (content type, share, median size in bytes, log-spread, extension, image format)
CONTENT_TYPES: tuple[tuple[str, float, int, float, str, str], ...] = (
    ("image/jpeg", 0.40, 1_800_000, 0.7, "jpg", "jpg"),
    ("image/png", 0.12, 600_000, 0.9, "png", "png"),
    ("image/heic", 0.10, 1_200_000, 0.6, "heic", "heic"),
    ("image/webp", 0.05, 300_000, 0.8, "webp", "webp"),
    ("video/mp4", 0.12, 25_000_000, 1.0, "mp4", ""),
    ("video/quicktime", 0.05, 40_000_000, 1.0, "mov", ""),
    ("audio/mpeg", 0.05, 4_000_000, 0.6, "mp3", ""),
    ("audio/aac", 0.03, 2_000_000, 0.6, "m4a", ""),
    ("application/pdf", 0.06, 500_000, 1.2, "pdf", ""),
    ("text/plain", 0.02, 8_000, 1.5, "txt", ""),
)
RESOLUTIONS = ((4032, 3024), (3024, 4032), (1920, 1080), (1080, 1920), (1280, 960), (800, 600))
REFUSAL_REASONS = (
    ("quota_exceeded", 5),
    ("size_mismatch", 3),
    ("ticket_expired", 3),
    ("type_not_allowed", 2),
    ("too_large", 1),
    ("no_ticket", 1),
)
USER_AGENTS = (
    "aliyun-sdk-android/2.9.19 (Linux/Android 14/Pixel 8)",
    "aliyun-sdk-ios/2.11.1 (iOS 17.5; iPhone15,2)",
    "okhttp/4.12.0",
    "MyApp/3.4 CFNetwork/1494.0.7 Darwin/23.4.0",
)


@dataclass(frozen=True)
class SeedResult:
    users: int
    uploads: int
    refusals: int
    grants: int
    seconds: float


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(n * 4):0{n}x}"


class _Writer:
    """Inserts rows of one model in batches: COPY on PostgreSQL, executemany elsewhere."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        self.fields = [f for f in model._meta.concrete_fields if not f.primary_key or not _auto(f)]
        self.columns = [f.column for f in self.fields]
        self.postgres = connection.vendor == "postgresql"
        self.plan = [
            (f.attname, f.get_default(), isinstance(f, models.JSONField)) for f in self.fields
        ]

    def _row(self, values: dict[str, Any]) -> list[Any]:
        if self.postgres:
            # COPY parses text itself: plain values, JSON as its text.
            return [
                (json.dumps(v) if v else "{}") if is_json else v
                for v, is_json in ((values.get(a, d), j) for a, d, j in self.plan)
            ]
        return [
            field.get_db_prep_save(
                values[field.attname] if field.attname in values else field.get_default(),
                connection,
            )
            for field in self.fields
        ]

    def write(self, rows: list[dict[str, Any]]) -> None:
        table = connection.ops.quote_name(self.model._meta.db_table)
        cols = ", ".join(connection.ops.quote_name(c) for c in self.columns)
        with transaction.atomic(), connection.cursor() as cursor:
            if self.postgres:
                with cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for values in rows:
                        copy.write_row(self._row(values))
            else:
                marks = ", ".join(["%s"] * len(self.columns))
                cursor.executemany(
                    f"INSERT INTO {table} ({cols}) VALUES ({marks})",  # noqa: S608 - names from the model
                    [self._row(v) for v in rows],
                )


def _auto(field: models.Field) -> bool:
    return isinstance(field, models.AutoField | models.BigAutoField | models.SmallAutoField)


def _batches(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def seed_demo_data(
    *,
    uploads: int,
    users: int | None = None,
    days: int = 180,
    seed: int | None = None,
    batch_size: int = 20_000,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> SeedResult:
    """Add `users` demo users and `uploads` uploads spread over the last `days` days.

    A few users upload most (Zipf-like); recent days are busier; sizes follow each content
    type's log-normal spread; 96% of uploads are active, 3% deleted, 1% missing. About one
    refusal per 200 uploads and one credential grant per 5 uploads are added alongside.
    """
    started = time.perf_counter()
    rng = random.Random(seed)
    now = now or timezone.now()
    users = users or max(10, uploads // 200)
    bucket = settings.OSS_BUCKET
    tag = _hex(rng, 6)
    report = progress or (lambda stage, done, total: None)

    # --- users
    report("users", 0, users)
    password = make_password(None)  # unusable: demo users cannot log in
    people = [
        User(
            username=f"demo-{tag}-{i:06d}",
            email=f"demo-{tag}-{i:06d}@example.com",
            password=password,
            public_id=_hex(rng, 32),
            date_joined=now - timedelta(days=days + 1),
        )
        for i in range(users)
    ]
    for start in range(0, users, 5000):
        User.objects.bulk_create(people[start : start + 5000])
        report("users", min(start + 5000, users), users)
    owners = list(
        User.objects.filter(username__startswith=f"demo-{tag}-")
        .order_by("username")
        .values_list("id", "public_id")
    )
    # Skewed (the busiest user uploads ~100x the quietest) but no one far past a quota.
    offset = max(1, len(owners) // 100)
    weights = [1 / (rank + offset) for rank in range(len(owners))]
    rng.shuffle(weights)  # heavy uploaders are not the first usernames
    cum = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)
    ct_cum = []
    acc = 0.0
    for entry in CONTENT_TYPES:
        acc += entry[1]
        ct_cum.append(acc)

    def when() -> datetime:
        # Busier recently: the age in days is skewed towards 0.
        age = days * rng.random() ** 1.6
        return now - timedelta(days=age)

    # --- uploads
    def upload_rows() -> Iterator[dict[str, Any]]:
        for _ in range(uploads):
            owner_id, public_id = rng.choices(owners, cum_weights=cum)[0]
            ctype, _share, median, spread, ext, image_format = rng.choices(
                CONTENT_TYPES, cum_weights=ct_cum
            )[0]
            size = max(1, min(int(rng.lognormvariate(math.log(median), spread)), 1024**3))
            created = when()
            roll = rng.random()
            status = "active" if roll < 0.96 else ("deleted" if roll < 0.99 else "missing")
            width, height = rng.choice(RESOLUTIONS) if image_format else (None, None)
            name = _hex(rng, 20)
            yield {
                "owner_id": owner_id,
                "ticket_id": None,
                "bucket": bucket,
                "key": f"users/{public_id}/{created:%Y/%m}/{name}.{ext}",
                "filename": f"{'IMG' if image_format else 'FILE'}_{rng.randint(1, 9999):04d}.{ext}",
                "size": size,
                "etag": _hex(rng, 32).upper(),
                "crc64": str(rng.getrandbits(63)),
                "content_type": ctype,
                "image_width": width,
                "image_height": height,
                "image_format": image_format,
                "metadata": {},
                "oss_request_id": _hex(rng, 24).upper(),
                "status": status,
                "created_at": created,
                "updated_at": created,
                "deleted_at": created + timedelta(days=1) if status == "deleted" else None,
            }

    writer = _Writer(Upload)
    report("uploads", 0, uploads)
    done = 0
    for batch in _batches(upload_rows(), batch_size):
        writer.write(batch)
        done += len(batch)
        report("uploads", done, uploads)

    # --- refusals and credential grants
    refusal_count = max(1, uploads // 200)
    reasons = [r for r, _ in REFUSAL_REASONS]
    reason_weights = [w for _, w in REFUSAL_REASONS]

    def refusal_rows() -> Iterator[dict[str, Any]]:
        for _ in range(refusal_count):
            owner_id, public_id = rng.choices(owners, cum_weights=cum)[0]
            reason = rng.choices(reasons, weights=reason_weights)[0]
            ctype = rng.choices(CONTENT_TYPES, cum_weights=ct_cum)[0]
            yield {
                "created_at": when(),
                "reason": reason,
                "message": f"Refused: {reason.replace('_', ' ')}.",
                "owner_id": owner_id,
                "ticket_id": None,
                "bucket": bucket,
                "key": f"users/{public_id}/{_hex(rng, 20)}.{ctype[4]}",
                "size": int(rng.lognormvariate(math.log(ctype[2]), ctype[3])),
                "content_type": ctype[0],
                "oss_request_id": _hex(rng, 24).upper(),
                "object_removed": True,
            }

    refusal_writer = _Writer(CallbackRefusal)
    report("refusals", 0, refusal_count)
    done = 0
    for batch in _batches(refusal_rows(), batch_size):
        refusal_writer.write(batch)
        done += len(batch)
        report("refusals", done, refusal_count)

    grant_count = max(1, uploads // 5)

    def grant_rows() -> Iterator[dict[str, Any]]:
        for _ in range(grant_count):
            owner_id, public_id = rng.choices(owners, cum_weights=cum)[0]
            created = when()
            yield {
                "user_id": owner_id,
                "scope": "write",
                "bucket": bucket,
                "prefix": f"users/{public_id}/",
                "policy_sha256": _hex(rng, 64),
                "access_key_id": "STS.demo" + _hex(rng, 20),
                "expiration": created + timedelta(hours=1),
                "sts_request_id": _hex(rng, 24).upper(),
                "client_ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 99)}",
                "user_agent": rng.choice(USER_AGENTS),
                "created_at": created,
                "times_served": rng.randint(1, 12),
                "last_served_at": created + timedelta(minutes=rng.randint(0, 50)),
            }

    grant_writer = _Writer(CredentialGrant)
    report("credential grants", 0, grant_count)
    done = 0
    for batch in _batches(grant_rows(), batch_size):
        grant_writer.write(batch)
        done += len(batch)
        report("credential grants", done, grant_count)

    # --- quota counters, as the callbacks would have left them
    owner_ids = [o for o, _ in owners]
    report("usage counters", 0, len(owner_ids))
    for start in range(0, len(owner_ids), 2000):
        chunk = owner_ids[start : start + 2000]
        sums = {
            r["owner_id"]: r
            for r in Upload.objects.filter(owner_id__in=chunk, status=Upload.Status.ACTIVE)
            .values("owner_id")
            .annotate(n=Count("id"), b=Sum("size"))
        }
        StorageUsage.objects.bulk_create(
            [
                StorageUsage(
                    user_id=o,
                    objects_used=sums[o]["n"] if o in sums else 0,
                    bytes_used=sums[o]["b"] if o in sums else 0,
                )
                for o in chunk
            ],
            update_conflicts=True,
            unique_fields=["user"],
            update_fields=["objects_used", "bytes_used"],
        )
        report("usage counters", min(start + 2000, len(owner_ids)), len(owner_ids))

    return SeedResult(
        users=users,
        uploads=uploads,
        refusals=refusal_count,
        grants=grant_count,
        seconds=time.perf_counter() - started,
    )
