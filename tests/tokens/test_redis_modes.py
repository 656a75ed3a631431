"""The credentials path against the Redis deployments operators run besides a single server:
a real Redis Cluster (three masters, redis-py's RedisCluster) and a master found through a real
Sentinel, each started on free ports in a temporary directory for the test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.core.cache import cache
from rest_framework.test import APIRequestFactory

from accounts.authentication import StatelessJWTAuthentication
from accounts.services import user_suspend, user_unsuspend
from appserver.errors import Throttled
from tests.processes import _accepts, _wait
from tokens.services import credentials_cache_key, credentials_issue
from tokens.services.keys import rate_counter_key
from tokens.services.rate import THROTTLE_SCOPE

pytestmark = pytest.mark.django_db
REDIS_SERVER = shutil.which("redis-server") or "redis-server"


def _port_with_bus() -> int:
    """A free port whose cluster-bus port (+10000) is free too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 <= 65535 and not _accepts(port + 10000):
            return port


def _start(args: list[str], port: int, directory: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [REDIS_SERVER, *args], cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    _wait(lambda: _accepts(port), f"redis-server on port {port} accepting")
    return process


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()
    for process in processes:
        process.wait(timeout=10)


def _use(settings, location: str) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "appserver.cache.RedisCache",
            "LOCATION": [location],
            "KEY_PREFIX": "modes",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }


@pytest.fixture
def redis_cluster(settings, tmp_path):
    """Three masters, no replicas; the cache points at one of them as a startup node."""
    ports = [_port_with_bus() for _ in range(3)]
    processes = [
        _start(
            [
                *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                *("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"),
            ],
            port,
            tmp_path,
        )
        for port in ports
    ]
    try:
        subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in ports),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        clients = [redis.Redis(port=port) for port in ports]
        _wait(
            lambda: all(c.cluster("info")["cluster_state"] == "ok" for c in clients),
            "the cluster agreeing on its slots",
        )
        _use(settings, f"redis+cluster://127.0.0.1:{ports[0]}")
        yield clients
    finally:
        _stop(processes)


@pytest.fixture
def sentinel_master(settings, tmp_path):
    """A master with a password and one Sentinel that monitors it; the cache names only the
    Sentinel (and the master's password)."""
    master_port, sentinel_port = _port_with_bus(), _port_with_bus()
    master = _start(
        [
            *("--port", str(master_port), "--bind", "127.0.0.1", "--save", "", "--appendonly"),
            *("no", "--requirepass", "s3cret:with@signs"),
        ],
        master_port,
        tmp_path,
    )
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\n"
        f"sentinel monitor appcache 127.0.0.1 {master_port} 1\n"
        "sentinel auth-pass appcache s3cret:with@signs\n"
    )
    try:
        sentinel = _start([str(config), "--sentinel"], sentinel_port, tmp_path)
    except BaseException:
        _stop([master])
        raise
    try:
        password = quote("s3cret:with@signs", safe="")
        _use(settings, f"redis+sentinel://:{password}@127.0.0.1:{sentinel_port}/appcache/0")
        yield redis.Redis(port=master_port, password="s3cret:with@signs")
    finally:
        _stop([sentinel, master])


def _set_rate(settings, rate: str) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "credentials": rate,
        },
    }


def _issue(user, scope: str = "readwrite"):
    user.refresh_from_db()
    return credentials_issue(user=user, scope=scope, client_ip=None, user_agent="")


def _the_credentials_path_works(user, other_user, alibaba, settings) -> None:
    """Reuse, the exact rate, the single flight's lock and a suspension, on the cache now set."""
    _set_rate(settings, "4/min")
    calls = alibaba.sts.assume_role_calls
    first = _issue(user)
    assert [_issue(user).access_key_id for _ in range(3)] == [first.access_key_id] * 3
    with pytest.raises(Throttled):
        _issue(user)
    assert alibaba.sts.assume_role_calls == calls + 1
    assert _issue(other_user, "read").scope == "read"
    key = credentials_cache_key(user=user, scope="readwrite")
    assert cache.get(key) is not None
    user_suspend(user=user, reason="test")
    assert cache.get(key) is None  # dropped by one multi-key delete
    user_unsuspend(user=user)
    cache.delete(rate_counter_key(THROTTLE_SCOPE, user.pk))
    assert _issue(user).access_key_id != first.access_key_id


def test_the_credentials_path_on_a_redis_cluster(
    user, other_user, alibaba, settings, redis_cluster
):
    from tests.factories import UserFactory

    _the_credentials_path_works(user, other_user, alibaba, settings)
    for someone in UserFactory.create_batch(6):
        _issue(someone, "read")
    # The users' keys really are spread over the masters (a cluster, not one node in disguise).
    assert sum(1 for client in redis_cluster if client.dbsize()) >= 2


def test_the_credentials_path_through_sentinel(
    user, other_user, alibaba, settings, sentinel_master
):
    _the_credentials_path_works(user, other_user, alibaba, settings)
    assert sentinel_master.exists(
        cache.make_key(credentials_cache_key(user=user, scope="readwrite"))
    )


def test_a_key_prefix_with_braces_is_a_check_error(settings):
    from tokens.checks import credentials_settings_check

    assert not any(p.id == "tokens.E002" for p in credentials_settings_check(None))
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": "app{1}"}}
    assert "tokens.E002" in [p.id for p in credentials_settings_check(None)]


def test_the_token_epoch_on_a_redis_cluster(
    api_client, user, password, settings, redis_cluster, django_assert_num_queries
):
    """The hot endpoints' one read (the user's epoch and the mark of an ended session, one
    MGET) stays in the user's hash slot, so a cluster serves it without the database, and a
    logout's mark reaches it."""
    login = api_client.post(
        "/api/auth/login/", {"username": user.username, "password": password}, format="json"
    )
    assert login.status_code == 200, login.content
    access, refresh = login.json()["access"], login.json()["refresh"]
    usage = "/api/uploads/usage/"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {access}"}
    assert api_client.get(usage, **auth).status_code == 200  # the database decides, once

    request = APIRequestFactory().get(usage, **auth)
    with django_assert_num_queries(0):
        found, _ = StatelessJWTAuthentication().authenticate(request)
    assert found.pk == user.pk

    logout = api_client.post("/api/auth/logout/", {"refresh": refresh}, format="json")
    assert logout.status_code in (200, 204), logout.content
    response = api_client.get(usage, **auth)
    assert response.status_code == 401, response.content
