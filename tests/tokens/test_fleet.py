"""The credentials cache as a fleet sees it: two policy versions during a rolling deploy, one
slow STS call among many, a lock that outlived its TTL, and keys that a Redis Cluster can hold.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connections
from redis.cluster import key_slot

from policies.services import ALL_SCOPES, policy_for_user
from tokens.models import CredentialGrant
from tokens.services import credentials_cache_key, credentials_issue, session_name_for
from tokens.services.keys import entry_key, failure_key, lock_key, rate_counter_key
from tokens.services.rate import THROTTLE_SCOPE
from tokens.services.sealing import entry_version
from tokens.services.single_flight import _fleet_lock

TEMPLATES = Path(__file__).resolve().parents[2] / "policies" / "templates"


def _issue(user, scope: str = "readwrite"):
    return credentials_issue(user=user, scope=scope, client_ip=None, user_agent="")


@pytest.fixture
def two_template_versions(tmp_path) -> tuple[str, str]:
    """The shipped templates, and a release that drops one action from `readwrite`."""
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(TEMPLATES, old)
    shutil.copytree(TEMPLATES, new)
    document = json.loads((new / "readwrite.json").read_text())
    document["Statement"][0]["Action"].remove("oss:ListParts")
    (new / "readwrite.json").write_text(json.dumps(document))
    return str(old), str(new)


@pytest.mark.django_db
def test_a_rolling_deploy_makes_one_assume_role_per_version(
    user, alibaba, settings, two_template_versions
):
    """Requests of one user alternate between instances of the old and the new release: each
    version's entry stays, so STS is called once per version, not once per request."""
    calls = alibaba.sts.assume_role_calls
    issued: dict[str, set[str]] = {version: set() for version in two_template_versions}
    for _ in range(6):
        for version in two_template_versions:
            settings.POLICY_TEMPLATES_DIR = version
            issued[version].add(_issue(user).access_key_id)
    assert alibaba.sts.assume_role_calls == calls + 2
    assert all(len(keys) == 1 for keys in issued.values())
    assert len(set.union(*issued.values())) == 2
    assert CredentialGrant.objects.filter(user=user).values("policy_sha256").distinct().count() == 2


@pytest.mark.django_db
def test_a_sealing_key_rotation_makes_one_assume_role_per_release(user, alibaba, settings):
    """The new release encrypts with a key the old one does not have yet: neither can read the
    other's entry, and without the key in the cache key they would replace each other's."""
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    calls = alibaba.sts.assume_role_calls
    for _ in range(4):
        for keys in (old, f"{new},{old}"):
            settings.CREDENTIALS_ENCRYPTION_KEY = keys
            _issue(user)
    assert alibaba.sts.assume_role_calls == calls + 2


@pytest.mark.django_db(transaction=True)
def test_a_slow_sts_call_holds_up_no_other_user(user, alibaba, settings):
    """While STS keeps one user's AssumeRole waiting, other users' misses are answered."""
    from tests.factories import UserFactory

    others = UserFactory.create_batch(6)
    release = alibaba.sts.hold_session(session_name_for(user=user))
    calls = alibaba.sts.assume_role_calls
    outcome: dict[str, object] = {}

    def slow() -> None:
        try:
            outcome["issued"] = _issue(user)
        except Exception as exc:  # shown by the assertion below
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while alibaba.sts.assume_role_calls == calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert alibaba.sts.assume_role_calls == calls + 1  # the slow call is at STS now
        # Every scope of every other user: with 64 striped locks, some shared the slow one's.
        answered = [_issue(other, scope) for other in others for scope in ("read", "readwrite")]
        assert all(not issued.reused for issued in answered)
        assert thread.is_alive()  # still waiting at STS: nobody above queued behind it
    finally:
        release.set()
        thread.join(timeout=30)
    assert "error" not in outcome, outcome
    assert not outcome["issued"].reused
    assert alibaba.sts.assume_role_calls == calls + 1 + len(answered)


@pytest.mark.django_db
def test_a_lock_released_after_it_expired_leaves_the_next_holders_lock(user, settings):
    key = credentials_cache_key(user=user, scope="readwrite")
    client = cache._cache.get_client(write=True)
    full_lock_key = cache.make_key(lock_key(key))
    with _fleet_lock(key, ttl=0.1) as held:
        assert held
        # The holder stalls past its TTL (a long GC pause, a stopped process)...
        time.sleep(0.3)
        assert client.get(full_lock_key) is None
        # ...and another request takes the lock meanwhile.
        next_holder = cache.lock(lock_key(key), timeout=30)
        assert next_holder.acquire(blocking=False)
        token = client.get(full_lock_key)
    # The late release did not delete the other request's lock.
    assert client.get(full_lock_key) == token
    with _fleet_lock(key, ttl=5) as held:
        assert not held
    next_holder.release()
    assert client.get(full_lock_key) is None


@pytest.mark.django_db
def test_every_multi_key_operation_of_a_user_stays_in_one_hash_slot(user, staff_user):
    """The rate script (counter + entry), the lock and failure keys, and the suspension's
    delete of every scope: one slot per user, whatever the epoch, scope and policy."""
    for someone in (user, staff_user):
        keys = [cache.make_key(rate_counter_key(THROTTLE_SCOPE, someone.pk))]
        for epoch in (0, 1, 7):
            for scope in ALL_SCOPES:
                version = entry_version(policy_for_user(user=someone, scope=scope))
                entry = entry_key(someone.pk, epoch, scope, version)
                keys += [cache.make_key(k) for k in (entry, lock_key(entry), failure_key(entry))]
        assert len({key_slot(k.encode()) for k in keys}) == 1
    # ...and users are spread over the slots, not all in one.
    assert key_slot(cache.make_key(rate_counter_key(THROTTLE_SCOPE, user.pk)).encode()) != key_slot(
        cache.make_key(rate_counter_key(THROTTLE_SCOPE, staff_user.pk)).encode()
    )
