"""Each worker's copies of the shared credentials entry, and the per-user rate across workers.

Against real Redis (the copies are only used in front of it): the copies save the round trip of
unmetered requests, never outlive the user's epoch or their own age limit, and the per-user rate
is exact however the requests spread over workers.
"""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from accounts.services import user_suspend, user_unsuspend
from appserver.errors import Throttled
from tests.helpers import allowed_across_forked_workers
from tokens.services import credentials_cache_key, credentials_issue

pytestmark = pytest.mark.django_db


def _ask(user, scope: str = "readwrite", *, metered: bool = True):
    user.refresh_from_db()  # what authentication does on every request
    return credentials_issue(user=user, scope=scope, client_ip=None, user_agent="", metered=metered)


def _set_rate(settings, rate: str) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "credentials": rate,
        },
    }


def test_a_worker_serves_unmetered_requests_from_its_copy(user, alibaba, settings):
    settings.CREDENTIALS_LOCAL_SECONDS = 60
    first = _ask(user, metered=False)
    # With the shared entry gone, only this worker's copy can answer without calling STS.
    cache.delete(credentials_cache_key(user=user, scope="readwrite"))
    calls = alibaba.sts.assume_role_calls
    again = [_ask(user, metered=False) for _ in range(5)]
    assert {c.access_key_id for c in again} == {first.access_key_id}
    assert all(c.reused for c in again)
    assert alibaba.sts.assume_role_calls == calls


def test_metered_requests_always_reach_redis(user, alibaba, settings):
    """Counting each metered request in Redis is what keeps the rate exact: no copy answers it."""
    settings.CREDENTIALS_LOCAL_SECONDS = 60
    first = _ask(user)
    cache.delete(credentials_cache_key(user=user, scope="readwrite"))
    calls = alibaba.sts.assume_role_calls
    fresh = _ask(user)
    assert fresh.access_key_id != first.access_key_id
    assert alibaba.sts.assume_role_calls == calls + 1


def test_a_copy_is_read_again_from_redis_once_it_is_old(user, alibaba, settings):
    settings.CREDENTIALS_LOCAL_SECONDS = 0.2
    first = _ask(user, metered=False)
    cache.delete(credentials_cache_key(user=user, scope="readwrite"))
    time.sleep(0.3)
    calls = alibaba.sts.assume_role_calls
    fresh = _ask(user, metered=False)
    assert fresh.access_key_id != first.access_key_id
    assert alibaba.sts.assume_role_calls == calls + 1


def test_no_copies_with_local_seconds_zero(user, alibaba, settings):
    settings.CREDENTIALS_LOCAL_SECONDS = 0
    first = _ask(user, metered=False)
    cache.delete(credentials_cache_key(user=user, scope="readwrite"))
    assert _ask(user, metered=False).access_key_id != first.access_key_id


def test_suspension_voids_every_workers_copies_through_the_epoch(user, alibaba, settings):
    settings.CREDENTIALS_LOCAL_SECONDS = 60
    first = _ask(user, metered=False)
    epoch = user.credentials_epoch
    user_suspend(user=user, reason="abuse")
    user_unsuspend(user=user)
    user.refresh_from_db()
    assert user.credentials_epoch == epoch + 1
    # Redis's entry and this worker's copy are both keyed by the old epoch: new credentials.
    assert _ask(user, metered=False).access_key_id != first.access_key_id


def test_one_worker_gets_exactly_the_rate(user, other_user, alibaba, settings):
    settings.CREDENTIALS_LOCAL_SECONDS = 60
    _set_rate(settings, "40/min")
    served = [_ask(user) for _ in range(40)]
    assert len({c.access_key_id for c in served}) == 1
    with pytest.raises(Throttled) as caught:
        _ask(user)
    assert 0 < caught.value.retry_after <= 60
    assert _ask(other_user).scope == "readwrite"  # the rate is the user's own


@pytest.mark.parametrize("workers", [1, 16, 64])
def test_the_rate_is_exact_at_any_number_of_workers(user, alibaba, settings, workers):
    """The default 120/min spread over 1, 16 and 64 worker processes (forked from this one,
    each with its own state: Redis connections, copies and memoised decryptions) hammering one
    real Redis at once: exactly 120 answered."""
    settings.CREDENTIALS_LOCAL_SECONDS = 5
    _set_rate(settings, "120/min")
    credentials_issue(user=user, scope="readwrite", client_ip=None, user_agent="", metered=False)
    settings.CREDENTIALS_SERVED_FLUSH_SECONDS = 3600  # the workers never write to the database
    per_worker = max(3, -(-2 * 120 // workers))  # twice the rate in all

    def attempt() -> bool:
        try:
            credentials_issue(user=user, scope="readwrite", client_ip=None, user_agent="")
        except Throttled:
            return False
        return True

    allowed, refused = allowed_across_forked_workers(attempt, workers=workers, tries=per_worker)
    assert (allowed, refused) == (120, workers * per_worker - 120)
