"""The floors of `make bench`: each hot endpoint's guarantees at their least cost, on the anchor.

An endpoint slower than its anchor is slower either because of what it must do (its guarantees)
or because of how it does it (the stack). Each floor here does only what the guarantee needs,
the cheapest way Django and DRF allow (the anchor's stateless JWT check, one Redis script, at
most one SQL statement through Django's cursor), and nothing else: no middleware, logging,
metrics, serializers or error handling. The project's endpoint against its floor measures the
stack; the floor against the anchor measures the guarantee.

    GET  /floor/credentials/  exact per-user state and rate across a fleet (the user's token
                              epoch and ended-session mark, a rate counter), and the shared
                              cached credentials, sealed: one Redis script, one memoised
                              Fernet decryption.
    POST /floor/tickets/      the same state check and a fleet-exact sliding-window rate (one
                              Redis script), then the quota reserved and the ticket written in
                              one statement; the answer carries the callback headers and the
                              ticket's MAC.
    GET  /floor/uploads/      the state check (one Redis round trip), a page of 50 rows by
                              keyset (one SELECT), two presigned image URLs per row (OSS V4:
                              SHA-256 and HMAC-SHA256) and the next cursor.

`floors_setup(user_ids, body=...)` makes the tables and the Redis state (anchor.py's `tokens`
command).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import redis
from cryptography.fernet import Fernet
from django.db import connection
from rest_framework.exceptions import NotAuthenticated, Throttled, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication

PREFIX = os.environ.get("ANCHOR_KEY_PREFIX", "anchor")
SEAL = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"anchor-floor").digest()))
MAC_KEY = b"anchor-floor-ticket-mac"
SIGNING_KEY = hashlib.sha256(b"anchor-floor-oss").digest()
_redis = redis.Redis.from_url(os.environ.get("ANCHOR_REDIS_URL", "redis://127.0.0.1:6379/0"))

# KEYS: epoch, ended-session mark, rate counter, sealed entry. ARGV: window ms.
_CREDENTIALS = _redis.register_script(
    """
local hits = redis.call('INCR', KEYS[3])
if hits == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[1]) end
return {redis.call('GET', KEYS[1]), redis.call('EXISTS', KEYS[2]), hits,
  redis.call('GET', KEYS[4])}
"""
)
# KEYS: epoch, ended-session mark, request log. ARGV: now ms, window ms, limit, member.
_TICKETS = _redis.register_script(
    """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
local allowed = 0
if redis.call('ZCARD', KEYS[3]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[3], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[3], window)
  allowed = 1
end
return {redis.call('GET', KEYS[1]), redis.call('EXISTS', KEYS[2]), allowed}
"""
)
_opened: dict[bytes, dict] = {}


def _keys(user_id: int, *names: str) -> list[str]:
    return [f"{PREFIX}:{{u{user_id}}}:{name}" for name in names]


def _current(request, epoch: bytes | None, ended: int) -> None:
    """The token's epoch is the user's and its session has not ended (else: the database
    decides, which a floor does not do)."""
    if epoch is None or int(epoch) != request.auth.get("epoch", 0) or ended:
        raise NotAuthenticated("stale token")


class CredentialsFloor(APIView):
    authentication_classes = [JWTStatelessUserAuthentication]

    def get(self, request):
        user_id = int(request.user.id)
        epoch, ended, hits, sealed = _CREDENTIALS(
            keys=_keys(user_id, "epoch", "ended", "rate", "entry"), args=[60000]
        )
        _current(request, epoch, ended)
        if hits > 10**9:
            raise Throttled()
        body = _opened.get(sealed)
        if body is None:
            body = _opened.setdefault(sealed, json.loads(SEAL.decrypt(sealed)))
        return Response(body)


CALLBACK = base64.b64encode(
    json.dumps(
        {
            "callbackUrl": "https://app.example.com/api/oss/callback/",
            "callbackBody": "bucket=${bucket}&object=${object}&etag=${etag}&size=${size}",
            "callbackBodyType": "application/x-www-form-urlencoded",
        }
    ).encode()
).decode()

RESERVE = """
WITH usage AS (
    UPDATE floor_usage SET bytes_reserved = bytes_reserved + %(size)s,
        objects_reserved = objects_reserved + 1
    WHERE user_id = %(user_id)s AND bytes_used + bytes_reserved + %(size)s <= max_bytes
      AND objects_used + objects_reserved + 1 <= max_objects
    RETURNING user_id
)
INSERT INTO floor_ticket (id, owner_id, key, filename, size, content_type, expires_at)
SELECT %(id)s, user_id, %(key)s, %(filename)s, %(size)s, %(content_type)s, %(expires_at)s
FROM usage RETURNING id
"""


class TicketsFloor(APIView):
    authentication_classes = [JWTStatelessUserAuthentication]

    def post(self, request):
        user_id = int(request.user.id)
        epoch, ended, allowed = _TICKETS(
            keys=_keys(user_id, "epoch", "ended", "log"),
            args=[int(time.time() * 1000), 60000, 10**9, os.urandom(8).hex()],
        )
        _current(request, epoch, ended)
        if not allowed:
            raise Throttled()
        data = request.data
        filename, size, content_type = (
            data.get("filename"),
            data.get("size"),
            data.get("content_type"),
        )
        if not (isinstance(filename, str) and isinstance(content_type, str)):
            raise ValidationError("filename, content_type")
        if not isinstance(size, int) or size < 0:
            raise ValidationError("size")
        ticket_id = uuid.uuid4()
        now = datetime.now(UTC)
        key = f"users/{user_id}/{now:%Y/%m/%d}/{ticket_id.hex}.jpg"
        expires_at = now + timedelta(minutes=15)
        with connection.cursor() as cursor:
            cursor.execute(
                RESERVE,
                {
                    "id": ticket_id,
                    "user_id": user_id,
                    "key": key,
                    "filename": filename[:255],
                    "size": size,
                    "content_type": content_type,
                    "expires_at": expires_at,
                },
            )
            if cursor.fetchone() is None:
                raise ValidationError("quota")
        token = hmac.new(MAC_KEY, f"{ticket_id}:{key}".encode(), hashlib.sha256).hexdigest()
        variables = base64.b64encode(json.dumps({"x:ticket": token}).encode()).decode()
        return Response(
            {
                "id": str(ticket_id),
                "key": key,
                "bucket": "app-uploads",
                "content_type": content_type,
                "max_size": size,
                "expires_at": expires_at.isoformat(),
                "headers": {
                    "x-oss-callback": CALLBACK,
                    "x-oss-callback-var": variables,
                    "x-oss-forbid-overwrite": "true",
                },
            },
            status=201,
        )


PAGE = """
SELECT id, key, filename, size, content_type, created_at, image_width, image_height, metadata
FROM floor_item WHERE owner_id = %s ORDER BY created_at DESC, id DESC LIMIT 51
"""
VARIANTS = ("image/resize,w_200", "image/resize,w_1024")


def _presigned(key: str, process: str, date_time: str) -> str:
    canonical = f"GET\n/app-uploads/{quote(key)}\nx-oss-process={quote(process, safe='')}"
    to_sign = f"OSS4-HMAC-SHA256\n{date_time}\n" + hashlib.sha256(canonical.encode()).hexdigest()
    signature = hmac.digest(SIGNING_KEY, to_sign.encode(), "sha256").hex()
    return (
        f"https://app-uploads.oss.example.com/{quote(key)}?x-oss-process="
        f"{quote(process, safe='')}&x-oss-date={date_time}&x-oss-signature={signature}"
    )


class UploadsFloor(APIView):
    authentication_classes = [JWTStatelessUserAuthentication]

    def get(self, request):
        user_id = int(request.user.id)
        epoch, ended = _redis.mget(_keys(user_id, "epoch", "ended"))
        _current(request, epoch, 1 if ended else 0)
        with connection.cursor() as cursor:
            cursor.execute(PAGE, [user_id])
            rows = cursor.fetchall()
        date_time = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        results = [
            {
                "id": row[0],
                "key": row[1],
                "filename": row[2],
                "size": row[3],
                "content_type": row[4],
                "created_at": row[5].isoformat(),
                "image_width": row[6],
                "image_height": row[7],
                "metadata": row[8],
                "variants": {
                    process: _presigned(row[1], process, date_time) for process in VARIANTS
                },
            }
            for row in rows[:50]
        ]
        last = rows[49] if len(rows) > 50 else None
        cursor_text = (
            base64.urlsafe_b64encode(f"{last[5].isoformat()},{last[0]}".encode()).decode()
            if last
            else None
        )
        return Response({"next": cursor_text, "results": results})


def floors_setup(user_ids: list[int], *, body: dict) -> None:
    """The floors' tables (each user with a large quota and 60 rows to list) and Redis state:
    `body` is the cached credentials answer, sealed."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DROP TABLE IF EXISTS floor_ticket, floor_usage, floor_item;
            CREATE TABLE floor_usage (user_id bigint PRIMARY KEY, bytes_used bigint NOT NULL,
                objects_used integer NOT NULL, bytes_reserved bigint NOT NULL,
                objects_reserved integer NOT NULL, max_bytes bigint NOT NULL,
                max_objects integer NOT NULL);
            CREATE TABLE floor_ticket (id uuid PRIMARY KEY, owner_id bigint NOT NULL,
                key varchar(1023) NOT NULL UNIQUE, filename varchar(255) NOT NULL,
                size bigint NOT NULL, content_type varchar(255) NOT NULL,
                status varchar(16) NOT NULL DEFAULT 'issued',
                created_at timestamptz NOT NULL DEFAULT now(), expires_at timestamptz NOT NULL);
            CREATE INDEX ON floor_ticket (owner_id, status);
            CREATE TABLE floor_item (id bigserial PRIMARY KEY, owner_id bigint NOT NULL,
                key varchar(1023) NOT NULL, filename varchar(255) NOT NULL, size bigint NOT NULL,
                content_type varchar(255) NOT NULL, created_at timestamptz NOT NULL,
                image_width integer, image_height integer, metadata jsonb NOT NULL);
            CREATE INDEX ON floor_item (owner_id, created_at DESC, id DESC);
            """
        )
        cursor.execute(
            """
            INSERT INTO floor_usage SELECT u, 0, 0, 0, 0, 1000000000000000000, 1000000000
            FROM unnest(%s::bigint[]) AS u;
            INSERT INTO floor_item (owner_id, key, filename, size, content_type, created_at,
                image_width, image_height, metadata)
            SELECT u, 'users/bench/' || u || '/' || g || '.png', g || '.png', 1000 + g,
                'image/png', now() - g * interval '1 minute', 640, 480, '{}'::jsonb
            FROM unnest(%s::bigint[]) AS u, generate_series(1, 60) AS g;
            ANALYZE floor_usage, floor_item;
            """,
            [user_ids, user_ids],
        )
    entry = SEAL.encrypt(json.dumps(body).encode())
    pipeline = _redis.pipeline(transaction=False)
    for user_id in user_ids:
        epoch, entry_key = _keys(user_id, "epoch", "entry")
        pipeline.set(epoch, 0, ex=3600)
        pipeline.set(entry_key, entry, ex=3600)
    pipeline.execute()
