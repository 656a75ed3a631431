"""Each worker's copies of the shared credentials entry, and its leases of the user's rate.

Against real Redis (the copies are only used in front of it): the copies save the round trip,
never outlive the user's epoch or their own age limit, and the per-user rate is never exceeded
however the requests spread over workers.
"""

from __future__ import annotations

import random
import time

import pytest
from django.core.cache import cache

from accounts.services import user_suspend, user_unsuspend
from appserver.errors import Throttled
from tokens.services import credentials_cache_key, credentials_issue
from tokens.worker_copies import WorkerCopies

pytestmark = pytest.mark.django_db


def _ask(user, scope: str = "readwrite"):
    user.refresh_from_db()  # what authentication does on every request
    return credentials_issue(user=user, scope=scope, client_ip=None, user_agent="")


def _set_rate(settings, rate: str) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "credentials": rate,
        },
    }


def test_a_worker_serves_its_copy_without_redis(user, alibaba, settings):
    settings.CREDENTIALS_LOCAL_SECONDS = 60
    first = _ask(user)
    # With the shared entry gone, only this worker's copy can answer without calling STS.
    cache.delete(credentials_cache_key(user=user, scope="readwrite"))
    calls = alibaba.sts.assume_role_calls
    again = [_ask(user) for _ in range(5)]
    assert {c.access_key_id for c in again} == {first.access_key_id}
    assert all(c.reused for c in again)
    assert alibaba.sts.assume_role_calls == calls


def test_a_copy_is_read_again_from_redis_once_it_is_old(user, alibaba, settings):
    settings.CREDENTIALS_LOCAL_SECONDS = 0.2
    first = _ask(user)
    cache.delete(credentials_cache_key(user=user, scope="readwrite"))
    time.sleep(0.3)
    calls = alibaba.sts.assume_role_calls
    fresh = _ask(user)
    assert fresh.access_key_id != first.access_key_id
    assert alibaba.sts.assume_role_calls == calls + 1


def test_no_copies_with_local_seconds_zero(user, alibaba, settings):
    settings.CREDENTIALS_LOCAL_SECONDS = 0
    first = _ask(user)
    cache.delete(credentials_cache_key(user=user, scope="readwrite"))
    assert _ask(user).access_key_id != first.access_key_id


def test_suspension_voids_every_workers_copies_through_the_epoch(user, alibaba, settings):
    settings.CREDENTIALS_LOCAL_SECONDS = 60
    first = _ask(user)
    epoch = user.credentials_epoch
    user_suspend(user=user, reason="abuse")
    user_unsuspend(user=user)
    user.refresh_from_db()
    assert user.credentials_epoch == epoch + 1
    # Redis's entry is gone and this worker's copy is keyed by the old epoch: new credentials.
    assert _ask(user).access_key_id != first.access_key_id


def test_one_worker_gets_exactly_the_rate(user, other_user, alibaba, settings):
    settings.CREDENTIALS_LOCAL_SECONDS = 60
    _set_rate(settings, "40/min")
    served = [_ask(user) for _ in range(40)]
    assert len({c.access_key_id for c in served}) == 1
    with pytest.raises(Throttled) as caught:
        _ask(user)
    assert 0 < caught.value.retry_after <= 60
    assert _ask(other_user).scope == "readwrite"  # the rate is the user's own


def test_the_rate_is_never_exceeded_across_workers(user):
    """Three workers' copies drawing on one real Redis counter in random order."""
    limit, window = 50, 60
    workers = [WorkerCopies() for _ in range(3)]
    counter = f"test-rate-{user.pk}"
    rng = random.Random(7)
    allowed = refused = 0
    for _ in range(300):
        worker = rng.choice(workers)
        now = time.monotonic()
        if worker.serve(
            user_pk=user.pk,
            epoch=0,
            scope="readwrite",
            now=now,
            max_age=60,
            metered=True,
            usable=lambda _entry: True,
        ):
            allowed += 1
            continue
        leased = worker.claim(user_pk=user.pk, limit=limit, now=now)
        hits, seconds_left, _ = cache.incr_window(counter, window, amount=leased)
        if worker.settle(
            user_pk=user.pk,
            leased=leased,
            hits=hits,
            seconds_left=seconds_left,
            limit=limit,
            now=now,
        ):
            worker.remember(user_pk=user.pk, epoch=0, scope="readwrite", entry="e", now=now)
            allowed += 1
        else:
            refused += 1
    assert allowed <= limit
    # Early refusals are bounded by what the other workers leased and did not spend.
    assert allowed >= limit - 2 * (limit // 8)
    assert refused == 300 - allowed
