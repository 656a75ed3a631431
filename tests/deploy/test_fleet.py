"""A real fleet: two app instances under gunicorn (two workers each) behind
HAProxy, in front of a PostgreSQL primary with a streaming replica, a redis-server and the
emulator, all of this module's own (scripts/fleet_stack.py), so killing and restarting them
never touches the shared servers.

What a fleet must keep that one process keeps for free: one AssumeRole per (user, scope) for
all instances; the per-user rate exact however requests spread; a suspension seen by every
instance at once; nothing lost when an instance dies mid-request; 503 with Retry-After while
Redis or PostgreSQL is down and recovery without restarting anything; and a rolling restart to
a changed policy template costing at most one AssumeRole per active user and scope.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import oss2
import psycopg
import pytest
import requests

from emulator import config as emulator_config
from scripts import fleet_parts
from scripts.fleet_stack import Fleet, wait_until

# One fleet for the module: its tests run on one pytest-xdist worker (pyproject's --dist loadgroup).
pytestmark = [pytest.mark.xdist_group("fleet"), pytest.mark.slow(12)]

TIMEOUT = 20
# The per-user credentials rate of this fleet: high enough for every test's traffic, exact in
# the rate test.
CREDENTIALS_PER_HOUR = 300
# How long a rolling restart keeps both releases serving: longer than CREDENTIALS_LOCAL_SECONDS
# (5 s by default), so every worker of the old release reads the shared cache again while the
# new one is serving, as in a real deploy, where the two overlap for minutes.
MIXED_SECONDS = 6


@pytest.fixture(scope="module")
def fleet():
    fleet = Fleet.start(
        env={
            "THROTTLE_CREDENTIALS": f"{CREDENTIALS_PER_HOUR}/hour",
            "THROTTLE_TICKETS": "10000/min",
            "THROTTLE_CONFIRMATIONS": "10000/min",
        }
    )
    try:
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def healthy(fleet):
    # Every test starts (and a failed one leaves the next) with every part of the fleet up.
    for instance in fleet.instances:
        if not instance.running:
            instance.start()
    fleet.wait_healthy()
    return fleet


def _targets(fleet: Fleet) -> list[str]:
    """The load balancer and each instance directly."""
    return [fleet.url] + [instance.url for instance in fleet.instances]


def _auth(user: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {user['access']}"}


def credentials(url: str, user: dict, scope: str = "readwrite") -> requests.Response:
    return requests.get(
        url + "/api/sts/credentials/", params={"scope": scope}, headers=_auth(user), timeout=TIMEOUT
    )


def ticket(url: str, user: dict, size: int) -> requests.Response:
    body = {"filename": "f.txt", "size": size, "content_type": "text/plain"}
    return requests.post(url + "/api/uploads/tickets/", json=body, headers=_auth(user), timeout=30)


def _grants(fleet: Fleet, users: list[dict]) -> list[dict]:
    script = (
        "from tokens.models import CredentialGrant\n"
        "result = list(CredentialGrant.objects.filter(user_id__in=payload)"
        ".order_by('id').values('user_id', 'scope', 'policy_sha256'))"
    )
    return fleet.python(script, [u["pk"] for u in users])  # type: ignore[return-value]


def test_the_fleet_reads_the_emulator_where_it_serves():
    assert fleet_parts.PUBLIC_KEY_PATH == emulator_config.PUBLIC_KEY_PATH
    assert fleet_parts.STATS_PATH == emulator_config.STATS_PATH


def test_one_assume_role_per_user_and_scope_for_the_whole_fleet(healthy):
    fleet = healthy
    users = fleet.users("once", 5)
    scopes = ("read", "write", "readwrite")
    targets = _targets(fleet)
    jobs = [(u, s, targets[n % len(targets)]) for u in users for s in scopes for n in range(9)]
    random.Random(13).shuffle(jobs)
    calls = fleet.emulator.assume_role_calls()

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda job: (job, credentials(job[2], job[0], job[1])), jobs))

    issued = defaultdict(set)
    for (user, scope, _), response in answers:
        assert response.status_code == 200, response.text
        issued[user["pk"], scope].add(response.json()["AccessKeyId"])
    assert {key: len(ids) for key, ids in issued.items()} == dict.fromkeys(issued, 1)
    assert fleet.emulator.assume_role_calls() - calls == len(users) * len(scopes)
    assert len(_grants(fleet, users)) == len(users) * len(scopes)


def test_the_rate_limit_is_exact_across_instances(healthy):
    fleet = healthy
    (user,) = fleet.users("rate", 1)
    targets = _targets(fleet)
    over = 30

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(
                lambda n: credentials(targets[n % len(targets)], user),
                range(CREDENTIALS_PER_HOUR + over),
            )
        )

    statuses = Counter(response.status_code for response in answers)
    # Every instance and worker counted in the one shared window: not one request more, and
    # none refused early.
    assert statuses == {200: CREDENTIALS_PER_HOUR, 429: over}
    for response in answers:
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) > 0


def test_a_suspension_takes_effect_on_every_instance_at_once(healthy):
    fleet = healthy
    (user,) = fleet.users("suspend", 1)
    # Every worker of every instance serves the user (and keeps its copy of the credentials).
    for instance in fleet.instances:
        for _ in range(6):
            assert credentials(instance.url, user).status_code == 200

    fleet.python(
        "from accounts.models import User\nfrom accounts.services import user_suspend\n"
        "user_suspend(user=User.objects.get(pk=payload), reason='fleet test')",
        user["pk"],
    )

    # Straight after the suspension is committed, with no wait: no instance hands out anything.
    for url in _targets(fleet):
        for _ in range(4):
            response = credentials(url, user)
            assert response.status_code == 403, response.text
            assert response.json()["ErrorCode"] == "account_suspended"
        response = ticket(url, user, 10)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "account_suspended"


def test_an_instance_killed_mid_request_loses_nothing(healthy):
    fleet = healthy
    users = fleet.users("killed", 4)
    buckets = {}
    for user in users:
        creds = credentials(fleet.url, user).json()
        auth = oss2.StsAuth(
            creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"], "v4"
        )
        buckets[user["pk"]] = oss2.Bucket(
            auth, creds["Endpoint"], creds["Bucket"], region=creds["Region"], connect_timeout=10
        )
    rng = random.Random(20261202)
    plans = [(users[n % len(users)], rng.randbytes(rng.randint(1, 2000))) for n in range(160)]

    def upload(plan):
        user, data = plan
        issued = ticket(fleet.url, user, len(data))
        if issued.status_code != 201:
            return "ticket", issued.status_code, None
        issued = issued.json()
        headers = {**issued["headers"], "Content-Type": "text/plain"}
        try:
            result = buckets[user["pk"]].put_object(issued["key"], data, headers=headers)
        except oss2.exceptions.OssError as exc:
            return "upload", exc.status, issued
        return "upload", result.status, issued

    victim = fleet.instance("b")
    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(upload, plan) for plan in plans]
        # Killed while the load balancer has requests in flight at it (tickets, callbacks).
        wait_until(lambda: fleet.balancer.sessions("b") >= 2, "requests in flight at b")
        victim.kill()
        outcomes = [future.result() for future in futures]

    kinds = Counter((kind, status) for kind, status, _ in outcomes)
    cut = sum(n for (kind, status), n in kinds.items() if status in (502, 503, 203))
    assert cut, f"the kill cut no request in flight: {kinds}"
    # Only outcomes an app knows how to handle: a ticket lost with the instance (asked again
    # later), an upload recorded (200) or one whose callback was cut (203, confirmed below).
    assert set(kinds) <= {("ticket", 502), ("upload", 200), ("upload", 203)}, kinds
    for kind, status, issued in outcomes:
        if (kind, status) == ("upload", 203):
            owner = next(u for u in users if issued["key"].startswith(f"users/{u['public_id']}/"))
            confirmed = requests.post(
                f"{fleet.url}/api/uploads/tickets/{issued['id']}/confirm/",
                headers=_auth(owner),
                timeout=TIMEOUT,
            )
            assert confirmed.status_code == 200, confirmed.text
            assert confirmed.json()["ok"], confirmed.text

    victim.start()
    fleet.wait_healthy()
    fleet.manage("sweep_uploads")
    # For every user: each object is an active row with its size and ETag and each row has its
    # object (no half-written row), and usage is exactly the recorded sizes plus the
    # reservations of live tickets (no quota leaked by a request that died with the instance).
    counts = fleet.python(
        """
from django.conf import settings
from accounts.models import User
from tests.uploads.conftest import Live, assert_store_agrees
from uploads.models import Upload
live = Live(url="", emulator=None, settings=settings)
for pk in payload:
    assert_store_agrees(live, User.objects.get(pk=pk))
result = Upload.objects.filter(owner_id__in=payload, status=Upload.Status.ACTIVE).count()
""",
        [u["pk"] for u in users],
    )
    assert counts == kinds["upload", 200] + kinds["upload", 203]


def _assert_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["error"]["code"] if "error" in body else body["ErrorCode"]


def _served_by_balancer(fleet: Fleet) -> bool:
    """No instance is in rotation: the load balancer answers itself (503, Retry-After)."""
    response = requests.get(fleet.url + "/healthz", timeout=TIMEOUT)
    return response.status_code == 503 and "X-Served-By" not in response.headers


def _back_to_normal(fleet: Fleet, user: dict, pids: dict[str, int]) -> None:
    fleet.wait_healthy()  # by itself: nothing is restarted
    for url in _targets(fleet):
        assert credentials(url, user).status_code == 200
        assert ticket(url, user, 10).status_code == 201
    assert {i.name: i.process.pid for i in fleet.instances if i.running} == pids


@pytest.mark.parametrize("service", ["redis", "postgresql"])
def test_a_restarted_backing_service_gives_503_with_retry_after_then_normal(healthy, service):
    fleet = healthy
    warm, cold = fleet.users(f"restart-{service}-", 2)
    pids = {i.name: i.process.pid for i in fleet.instances}
    assert credentials(fleet.url, warm).status_code == 200
    stop, start = (
        (fleet.redis.stop, fleet.redis.start)
        if service == "redis"
        else (fleet.primary.stop, fleet.primary.start)
    )

    stop()
    try:
        for url in _targets(fleet):
            # `cold` has no credentials in any worker's copy (`warm` may be served from one for
            # CREDENTIALS_LOCAL_SECONDS without Redis, by design).
            _assert_unavailable(credentials(url, cold))
            _assert_unavailable(ticket(url, warm, 10))
        wait_until(lambda: _served_by_balancer(fleet), "the health checks taking both out")
        _assert_unavailable(credentials(fleet.url, cold))
    finally:
        start()
    _back_to_normal(fleet, warm, pids)
    _back_to_normal(fleet, cold, pids)

    # The replica follows the primary again: what the app writes now reaches it.
    (marker,) = fleet.users(f"replicated-{service}-", 1)

    def replicated() -> bool:
        with psycopg.connect(fleet.replica.url, connect_timeout=5) as connection:
            row = connection.execute(
                "SELECT pg_is_in_recovery(), count(*) FROM accounts_user WHERE id = %s",
                (marker["pk"],),
            ).fetchone()
        return row == (True, 1)

    wait_until(replicated, "the new user reaching the replica")


def test_a_rolling_restart_with_a_changed_policy_costs_one_assume_role_per_user_and_scope(
    healthy,
):
    fleet = healthy
    users = fleet.users("roll", 4)
    scopes = ("readwrite", "read")
    for user in users:
        for scope in scopes:
            for url in _targets(fleet):
                assert credentials(url, user, scope).status_code == 200
    calls = fleet.emulator.assume_role_calls()
    grants_before = len(_grants(fleet, users))

    # The new release's readwrite template also allows reading an object's metadata.
    template = fleet.directory / "policies" / "readwrite.json"
    template.write_text(
        template.read_text().replace('"oss:GetObject",', '"oss:GetObject",\n"oss:GetObjectMeta",')
    )

    stop = threading.Event()
    during: Counter = Counter()

    def active_users() -> None:
        while not stop.wait(0.7):
            for user in users:
                for scope in scopes:
                    try:
                        during[credentials(fleet.url, user, scope).status_code] += 1
                    except requests.RequestException as exc:  # counted, not lost with the thread
                        during[type(exc).__name__] += 1

    traffic = threading.Thread(target=active_users)
    traffic.start()
    try:
        for instance in fleet.instances:  # one at a time, as a deploy does
            instance.stop()
            instance.start()
            wait_until(lambda i=instance: fleet.balancer.status(i.name) == "UP", "back in rotation")
            if instance is fleet.instances[0]:
                stop.wait(MIXED_SECONDS)  # the old and the new release both serve
    finally:
        stop.set()
        traffic.join()
    for user in users:  # every user, every scope, every instance: on the new release now
        for scope in scopes:
            for url in _targets(fleet):
                assert credentials(url, user, scope).status_code == 200

    assert during and set(during) == {200}, during  # the roll cost no request either
    grants = _grants(fleet, users)[grants_before:]
    assert Counter((g["user_id"], g["scope"]) for g in grants) == {
        (u["pk"], "readwrite"): 1 for u in users
    }
    assert fleet.emulator.assume_role_calls() - calls == len(users)
