"""The API's throttles (appserver/throttling.py) against a real Redis: DRF's rule (at most N
requests in any window of the period), exact however many workers count at once."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from accounts.throttles import LoginIPThrottle
from tests.helpers import allowed_across_forked_workers
from uploads.apis import TicketThrottle

pytestmark = pytest.mark.django_db


def _set_rates(settings, **rates: str) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            **rates,
        },
    }


def _request(user=None, ip: str = "203.0.113.7") -> Request:
    request = Request(APIRequestFactory().post("/", REMOTE_ADDR=ip))
    if user is not None:
        request.user = user
    return request


def test_the_cache_under_test_is_redis():
    assert hasattr(cache, "sliding_log_hit"), "these tests are about the Redis-backed rule"


def test_a_sliding_window_not_a_fixed_one(user, settings):
    """3/s: the fourth request waits until the first leaves the window, then one more fits."""
    _set_rates(settings, tickets="3/s")
    throttle = TicketThrottle()
    start = time.time()
    throttle.timer = lambda: start
    assert [throttle.allow_request(_request(user), None) for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert throttle.wait() == pytest.approx(1.0, abs=0.002)
    throttle.timer = lambda: start + 0.5
    assert throttle.allow_request(_request(user), None) is False
    assert throttle.wait() == pytest.approx(0.5, abs=0.002)
    throttle.timer = lambda: start + 1.001
    assert [throttle.allow_request(_request(user), None) for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


def test_scopes_and_identities_are_counted_apart(user, other_user, settings):
    _set_rates(settings, tickets="1/min", login_ip="1/min")
    assert TicketThrottle().allow_request(_request(user), None)
    assert not TicketThrottle().allow_request(_request(user), None)
    assert TicketThrottle().allow_request(_request(other_user), None)
    assert LoginIPThrottle().allow_request(_request(ip="198.51.100.1"), None)
    assert LoginIPThrottle().allow_request(_request(ip="198.51.100.2"), None)
    assert not LoginIPThrottle().allow_request(_request(ip="198.51.100.1"), None)


def test_a_rate_of_none_is_no_limit_and_zero_refuses(user, settings):
    _set_rates(settings, tickets=None)
    assert all(TicketThrottle().allow_request(_request(user), None) for _ in range(5))
    _set_rates(settings, tickets="0/min")
    throttle = TicketThrottle()
    assert throttle.allow_request(_request(user), None) is False
    assert throttle.wait() == pytest.approx(60, abs=0.01)


@pytest.mark.parametrize("workers", [1, 16, 64])
def test_the_limit_is_exact_at_any_number_of_workers(user, settings, workers):
    """The default 120/min of tickets spread over 1, 16 and 64 worker processes (forked from
    this one, each with its own Redis connections) counting at once in one real Redis: exactly
    120 let through. DRF's own read-then-write of the log lets through more than that once
    several workers count at the same moment."""
    _set_rates(settings, tickets="120/min")
    per_worker = max(3, -(-2 * 120 // workers))  # twice the rate in all
    allowed, refused = allowed_across_forked_workers(
        lambda: TicketThrottle().allow_request(_request(user), None),
        workers=workers,
        tries=per_worker,
    )
    assert (allowed, refused) == (120, workers * per_worker - 120)
