"""Fixtures shared by every test: users, API clients, and the local Alibaba Cloud emulator.

The emulator runs in-process on a free port for the whole session; tests that talk to STS or
OSS take the `alibaba` fixture, which points the app's settings at it. Nothing of our own is
mocked: the app server calls the emulator over real HTTP with the official SDKs.
"""

from __future__ import annotations

from collections import Counter

import pytest
from rest_framework.test import APIClient

from tests.factories import PASSWORD, UserFactory
from tests.helpers import bearer, cache_clear
from tokens.services import credentials_forget_local_copies
from tokens.services.ledger import served_counter


def _estimate(item: pytest.Item) -> float:
    marker = item.get_closest_marker("slow")
    return float(marker.args[0]) if marker is not None else 0.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The schedule of a parallel run: the longest work first.

    Under `--dist loadgroup --no-loadscope-reorder` (pyproject.toml) xdist hands out one unit at
    a time in collection order: a test, or all the tests of one xdist_group. So the units are
    sorted here by their `slow(seconds)` estimate (a group's is its tests' sum), longest first,
    the rest after them in their usual order: a long test that started last would keep the run
    going while the other workers sit idle. The estimates only order the run and are never
    asserted. Every worker sorts the same collection the same way."""
    # xdist's loadgroup keys work by node id, so ids must be unique and a group's tests must say
    # their group in it ("...@fleet"). pytest 9 reads an item's id from `_id`; xdist 3.8 still
    # appends the group to `_nodeid`, which pytest no longer reads, and schemathesis names its
    # cases (one per operation) there too: without this, every fleet test would be its own
    # unit, and all but one of the schema test's cases would never run.
    ids = Counter(item.nodeid for item in items)
    for item in items:
        nodeid = item.nodeid
        if ids[nodeid] > 1 and not nodeid.endswith(f"::{item.name}"):
            nodeid = f"{nodeid.rsplit('::', 1)[0]}::{item.name}"
        marker = item.get_closest_marker("xdist_group")
        if marker is not None and hasattr(config, "workerinput"):
            nodeid += "@" + (marker.args or (marker.kwargs.get("name"),))[0]
        if nodeid != item.nodeid:
            item._id = type(item._id).parse(nodeid)

    def group(item: pytest.Item) -> object:
        marker = item.get_closest_marker("xdist_group")
        return (marker.args or (marker.kwargs.get("name"),))[0] if marker else item.nodeid

    units: dict[object, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(group(item), []).append(item)
    ordered = sorted(units.values(), key=lambda unit: -sum(map(_estimate, unit)))
    items[:] = [item for unit in ordered for item in unit]


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Throttle counters and cached credentials (and the worker's copies of them, which live in
    # this process with the live server) must not leak from one test into the next.
    cache_clear()
    credentials_forget_local_copies()
    yield
    cache_clear()
    credentials_forget_local_copies()
    # The hand-out counts name grants that the test's rolled-back transaction took with it;
    # kept, they would be flushed at exit into a test database already dropped.
    served_counter.discard()


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def staff_user(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(client, staff_user):
    """Django's test client logged in as staff (the admin pages' tests)."""
    client.force_login(staff_user)
    return client


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def auth_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=bearer(user)["Authorization"])
    return client


@pytest.fixture(scope="session")
def emulator():
    """One local STS + OSS emulator for the test session (in memory, free port)."""
    from emulator import Emulator, EmulatorConfig

    emu = Emulator(EmulatorConfig(port=0, data_dir=None)).start()
    yield emu
    emu.stop()


@pytest.fixture
def alibaba(settings, emulator):
    """Point the app server at the session's emulator; the emulator's clock is reset after."""
    settings.STS_ENDPOINT = emulator.endpoint
    settings.OSS_ENDPOINT = emulator.endpoint
    settings.OSS_PUBLIC_ENDPOINT = emulator.endpoint
    settings.OSS_CALLBACK_KEY_URL_PREFIXES = [emulator.endpoint + "/_emulator/"]
    yield emulator
    emulator.clock.reset()
