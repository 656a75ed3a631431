"""Proof under faults: a few hundred uploads through oss2 while callbacks are slow, the app
server is unreachable and PostgreSQL goes away; some apps are hostile. After the confirmations
an app makes and one sweep, the promise holds for every user: every object under their prefix
is a row with its size and ETag, every row has its object, and usage is the recorded sizes plus
the open reservations, within quota.

The faults are real: an emulator of its own whose OSS gives callbacks 1 s instead of 5 (the
same rule, shorter, so the test stays short), a relay in front of the app server that delays or
drops callbacks, and a relay in front of PostgreSQL that the test cuts (the shared server
itself is never stopped)."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import oss2
import pytest
import requests
from django.db import connection, connections

from emulator import Emulator, EmulatorConfig
from tests.factories import UserFactory
from tests.helpers import LocalServer, TcpProxy
from tests.uploads.conftest import Live, assert_store_agrees
from uploads.models import StorageUsage, Upload
from uploads.services import QuotaExceeded, ticket_issue
from uploads.sweep import uploads_sweep

pytestmark = pytest.mark.django_db(transaction=True)

UPLOADS = 240
CALLBACK_TIMEOUT = 1.0
SEED = 20261202


class CallbackRelay:
    """Between OSS and the app server: passes callbacks on, answers too late (after OSS gave
    up, the app having recorded it), or drops them as an app server that is down."""

    def __init__(self, target: str, rng: random.Random) -> None:
        self.faults: dict[str, int] = {"slow": 0, "down": 0, "passed": 0}
        lock = threading.Lock()
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                with lock:
                    fault = rng.choices(["passed", "slow", "down"], [80, 10, 10])[0]
                    relay.faults[fault] += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if fault == "down":
                    self.close_connection = True
                    return  # no answer at all: OSS reports a failed callback
                skip = {"host", "content-length", "connection"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                try:
                    answer = requests.post(
                        target + self.path, data=body, headers=headers, timeout=10
                    )
                except requests.RequestException:
                    self.close_connection = True
                    return  # the app server did not answer either
                if fault == "slow":
                    time.sleep(CALLBACK_TIMEOUT + 0.5)
                with contextlib.suppress(OSError):  # OSS may have given up waiting
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", answer.headers.get("Content-Type", ""))
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)

            def log_message(self, *args):
                pass

        self.server = LocalServer(Handler)


@pytest.fixture
def faulty(live, settings):
    emulator = Emulator(
        EmulatorConfig(port=0, data_dir=None, callback_timeout_seconds=CALLBACK_TIMEOUT)
    ).start()
    rng = random.Random(SEED)
    relay = CallbackRelay(live.url, rng)
    database = connections.settings["default"]
    upstream = (database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432))
    proxy = TcpProxy(upstream)
    settings.STS_ENDPOINT = settings.OSS_ENDPOINT = emulator.endpoint
    settings.OSS_PUBLIC_ENDPOINT = emulator.endpoint
    settings.OSS_CALLBACK_KEY_URL_PREFIXES = [emulator.endpoint + "/_emulator/"]
    settings.OSS_CALLBACK_URL = relay.server.url + "/api/oss/callback/"
    settings.SWEEP_GRACE_SECONDS = 0
    # The app server's connections (opened per request by its threads) now go through the
    # relay the test cuts; this thread keeps its own, direct one.
    connection.ensure_connection()  # opened now, directly: the cuts must never reach it
    saved = database["HOST"], database["PORT"]
    database["HOST"], database["PORT"] = "127.0.0.1", proxy.port
    try:
        yield Live(url=live.url, emulator=emulator, settings=settings), relay, proxy, rng
    finally:
        database["HOST"], database["PORT"] = saved
        if connection.settings_dict.get("PORT") != saved[1] or not connection.is_usable():
            connection.close()  # reopened directly when next used
        proxy.close()
        relay.server.close()
        emulator.stop()


def _edited(ticket: dict, victim_key: str, callback_url: str) -> dict:
    """The ticket's headers with a callback body naming someone else's key (item 1's attack)."""
    callback = {
        "callbackUrl": callback_url,
        "callbackBody": f"bucket=${{bucket}}&object={victim_key}&etag=${{etag}}&size=${{size}}"
        "&mimeType=${mimeType}&ticket=${x:ticket}",
    }
    encoded = base64.b64encode(json.dumps(callback).encode()).decode()
    return {**ticket["headers"], "x-oss-callback": encoded}


@pytest.mark.slow(12)
def test_the_store_and_the_bucket_agree_after_faults(faulty):
    live, relay, proxy, rng = faulty
    users = [UserFactory() for _ in range(4)]
    buckets = {u.pk: live.bucket(u) for u in users}  # credentials before any fault
    StorageUsage.objects.get_or_create(user=users[0])
    StorageUsage.objects.filter(user=users[0]).update(max_bytes=60_000)  # some will not fit

    kinds = ["honest", "oversize", "retyped", "stray", "edited"]
    plans = [
        (
            i,
            rng.choice(users),
            rng.randbytes(rng.randint(1, 1500)),
            rng.choices(kinds, [70, 8, 7, 10, 5])[0],
            rng.choice(users),
        )
        for i in range(UPLOADS)
    ]
    tickets = {}
    for i, user, data, kind, _victim in plans:
        if kind == "stray":
            continue
        try:  # the service the ticket endpoint calls (that endpoint has tests of its own)
            issued = ticket_issue(
                user=user, filename=f"f{i}.txt", size=len(data), content_type="text/plain"
            )
        except QuotaExceeded:
            continue
        tickets[i] = {
            "id": str(issued.ticket.id),
            "key": issued.ticket.key,
            "headers": issued.headers,
        }

    def upload(plan):
        i, user, data, kind, victim = plan
        bucket = buckets[user.pk]
        if kind == "stray":
            # Strays: half of a type a ticket could have allowed (adopted), half not (deleted).
            content_type = "text/plain" if i % 2 else "application/x-msdownload"
            bucket.put_object(
                f"users/{user.public_id}/loose/{i}",
                data,
                headers={"Content-Type": content_type, "x-oss-forbid-overwrite": "true"},
            )
            return None
        ticket = tickets.get(i)
        if ticket is None:
            return None
        headers = {**ticket["headers"], "Content-Type": "text/plain"}
        if kind == "oversize":
            data += b"+" * 10
        elif kind == "retyped":
            headers["Content-Type"] = "text/html"
        elif kind == "edited":
            headers = {
                **_edited(ticket, f"users/{victim.public_id}/x", live.settings.OSS_CALLBACK_URL),
                "Content-Type": "text/plain",
            }
        try:
            result = bucket.put_object(ticket["key"], data, headers=headers)
        except oss2.exceptions.OssError as exc:
            return i, exc.status, None
        answer = json.loads(result.resp.read()) if result.status == 200 else None
        return i, result.status, answer

    def database_outages():
        for _ in range(3):
            time.sleep(rng.uniform(0.5, 1.5))
            proxy.cut()
            time.sleep(rng.uniform(0.5, 1.0))
            proxy.restore()

    outages = threading.Thread(target=database_outages)
    outages.start()
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = [o for o in pool.map(upload, plans) if o is not None]
    outages.join()
    proxy.restore()

    unheard = [i for i, status, _ in outcomes if status == 203]
    assert unheard, "no callback failed: the faults did not happen"
    assert relay.faults["slow"] and relay.faults["down"]
    # Apps that got 203 confirm (half of them: the others were killed; the sweep is theirs).
    confirmed_ok = set()
    for i in unheard[::2]:
        owner = plans[i][1]
        response = live.api("POST", f"/api/uploads/tickets/{tickets[i]['id']}/confirm/", owner)
        assert response.status_code == 200, response.text
        if response.json()["ok"]:
            confirmed_ok.add(tickets[i]["key"])

    result = uploads_sweep()

    assert result.ran
    assert result.adopted and result.deleted and result.confirmed and result.refused
    for user in users:
        assert_store_agrees(live, user)
    accepted = {
        answer["upload"]["key"] for _, status, answer in outcomes if answer and answer["ok"]
    }
    recorded = set(Upload.objects.filter(status=Upload.Status.ACTIVE).values_list("key", flat=True))
    assert accepted | confirmed_ok <= recorded  # every upload the app was told about is there
