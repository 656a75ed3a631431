"""Redis or PostgreSQL down: every endpoint answers 503 with Retry-After in the one error shape
(`cache_unavailable`, `database_unavailable`), never a 500, and the server recovers by itself
once the service is back.

The app runs under gunicorn against a redis-server and a PostgreSQL cluster that this module
starts itself on free ports and kills (never the shared ones), with the session's emulator as
STS and OSS and oss2 as the phone.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import requests

from emulator import config as emulator_defaults
from scripts.demo_client import run_demo
from tests.processes import AppServer, PostgresCluster, RedisServer, app_environment
from tests.uploads.conftest import Live, callback_body

pytestmark = [pytest.mark.slow(20), pytest.mark.xdist_group("degraded_services")]

TIMEOUT = 15
PASSWORD = "a-long-test-password-1"
_names = itertools.count()

UP = {
    "login": (200, None),
    "register": (201, None),
    "refresh": (200, None),
    "credentials": (200, None),
    "ticket": (201, None),
    "list": (200, None),
    "callback": (200, None),
    "healthz": (200, None),
}


@dataclass
class Stack:
    app: AppServer
    redis: RedisServer
    postgres: PostgresCluster
    live: Live


@dataclass
class Account:
    username: str
    access: str = ""
    refresh: str = ""
    ticket: dict | None = None


@pytest.fixture(scope="module")
def stack(emulator, tmp_path_factory):
    redis, postgres = RedisServer(), PostgresCluster()
    app = None
    try:
        app = AppServer(
            app_environment(
                DATABASE_URL=postgres.url,
                REDIS_URL=redis.url,
                STS_ENDPOINT=emulator.endpoint,
                OSS_ENDPOINT=emulator.endpoint,
                OSS_CALLBACK_KEY_URL_PREFIXES=emulator.endpoint + "/_emulator/",
                # A worker may serve its own copy of a user's credentials for a few seconds
                # without Redis; with 0 every request reads Redis, so what this test sees does
                # not depend on how long ago the previous request was.
                CREDENTIALS_LOCAL_SECONDS="0",
                # Every hand-out is counted in the ledger at once: a count that cannot be written
                # (the database down) must not cost the answer, however long since the last one.
                CREDENTIALS_SERVED_FLUSH_SECONDS="0",
                # One client logs in and registers again and again from one address.
                THROTTLE_LOGIN_USERNAME="1000/min",
                THROTTLE_REGISTER="1000/hour",
            ),
            log=tmp_path_factory.mktemp("degraded") / "gunicorn.log",
        )
        live = Live(
            url=app.url,
            emulator=emulator,
            settings=SimpleNamespace(OSS_BUCKET=emulator_defaults.DEFAULT_BUCKET),
        )
        yield Stack(app=app, redis=redis, postgres=postgres, live=live)
    finally:
        if app is not None:
            app.close()
        redis.stop()
        postgres.close()


def _post(stack: Stack, path: str, body: dict, access: str = "") -> requests.Response:
    headers = {"Authorization": f"Bearer {access}"} if access else {}
    return requests.post(stack.app.url + path, json=body, headers=headers, timeout=TIMEOUT)


def _get(stack: Stack, path: str, access: str = "") -> requests.Response:
    headers = {"Authorization": f"Bearer {access}"} if access else {}
    return requests.get(stack.app.url + path, headers=headers, timeout=TIMEOUT)


def _ticket_body() -> dict:
    return {"filename": "a.png", "size": 100, "content_type": "image/png"}


def _outcome(response: requests.Response) -> tuple[int, str | None]:
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.status_code != 503:
        return response.status_code, None
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    # The credentials endpoint speaks the OSS SDKs' shape, everything else the project's.
    if "error" in body:
        code, message = body["error"]["code"], body["error"]["message"]
    else:
        code, message = body["ErrorCode"], body["ErrorMessage"]
    assert message
    return 503, code


def _answers(stack: Stack, account: Account) -> dict[str, tuple[int, str | None]]:
    """What each endpoint answers now, as (status, error code)."""
    callback = stack.live.post_callback(callback_body(account.ticket, etag="0" * 32, size=100))
    responses = {
        "login": _post(
            stack, "/api/auth/login/", {"username": account.username, "password": PASSWORD}
        ),
        "register": _post(
            stack,
            "/api/auth/register/",
            {"username": f"degraded-new{next(_names)}", "password": PASSWORD},
        ),
        "refresh": _post(stack, "/api/auth/refresh/", {"refresh": account.refresh}),
        "credentials": _get(stack, "/api/sts/credentials/", account.access),
        "ticket": _post(stack, "/api/uploads/tickets/", _ticket_body(), account.access),
        "list": _get(stack, "/api/uploads/", account.access),
        "callback": callback,
        "healthz": _get(stack, "/healthz"),
    }
    if responses["refresh"].status_code == 200:  # rotated: the old one is spent
        account.refresh = responses["refresh"].json()["refresh"]
    return {name: _outcome(response) for name, response in responses.items()}


def _everything_works(stack: Stack, account: Account) -> None:
    # Back by itself: the first requests may still meet the outage; nothing is restarted.
    deadline = time.monotonic() + 30
    while _get(stack, "/healthz").status_code != 200:
        assert time.monotonic() < deadline, stack.app.log()
        time.sleep(0.2)
    assert _answers(stack, account) == UP
    result = run_demo(
        base_url=stack.app.url, username=account.username, password=PASSWORD, say=lambda _: None
    )
    assert result.downloaded == result.uploaded


def _sign_up(stack: Stack) -> Account:
    account = Account(username=f"degraded{next(_names)}")
    response = _post(
        stack, "/api/auth/register/", {"username": account.username, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    tokens = _post(stack, "/api/auth/login/", {"username": account.username, "password": PASSWORD})
    account.access, account.refresh = tokens.json()["access"], tokens.json()["refresh"]
    # A ticket whose callback is sent while services are down (it never reaches the database).
    ticket = _post(stack, "/api/uploads/tickets/", _ticket_body(), account.access)
    assert ticket.status_code == 201, ticket.text
    account.ticket = ticket.json()
    return account


def test_redis_down_gives_503_cache_unavailable_and_recovers(stack):
    account = _sign_up(stack)
    _everything_works(stack, account)

    stack.redis.stop()
    try:
        assert _answers(stack, account) == {
            # Throttles count in Redis: without it nobody is let through unthrottled.
            "login": (503, "cache_unavailable"),
            "register": (503, "cache_unavailable"),
            "refresh": (200, None),
            # No reuse and no single flight without the shared cache: STS is not hammered.
            "credentials": (503, "cache_unavailable"),
            "ticket": (503, "cache_unavailable"),
            "list": (200, None),
            # A verified callback needs only the key (kept in the worker) and the database.
            "callback": (200, None),
            "healthz": (503, "cache_unavailable"),
        }
    finally:
        stack.redis.start()
    _everything_works(stack, account)


def test_postgresql_down_gives_503_database_unavailable_and_recovers(stack):
    account = _sign_up(stack)
    _everything_works(stack, account)

    stack.postgres.stop()
    try:
        assert _answers(stack, account) == {
            **{name: (503, "database_unavailable") for name in UP},
            # Cached credentials of a user Redis knows in good standing (the token epoch,
            # accounts/token_state.py) need no database: nothing to refuse them for.
            "credentials": (200, None),
        }
    finally:
        stack.postgres.start()
    _everything_works(stack, account)
