"""The per-user "credentials" rate, counted in the same Redis round trip that reads the entry.

The endpoint's throttle lives here rather than in a DRF throttle class so that the hottest path
of the server costs one round trip, not three (a DRF throttle reads and writes its request log,
then the entry is read). It is a fixed window that starts with the user's first request; over
the rate -> 429 with the seconds left in the window. Every metered request is counted in Redis
before it is answered, so the rate is exact however many workers and instances serve the user
(tokens.worker_copies says why there are no local leases).
"""

from __future__ import annotations

import math

from django.conf import settings
from django.core.cache import cache
from rest_framework.settings import api_settings

from appserver.errors import Throttled
from tokens.services.keys import rate_counter_key
from tokens.worker_copies import WorkerCopies

THROTTLE_SCOPE = "credentials"
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# This worker's copies of entries, for unmetered requests.
worker_copies = WorkerCopies()


def worker_copies_enabled() -> bool:
    # Only in front of Redis: the local-memory cache is this process's memory already.
    return settings.CREDENTIALS_LOCAL_SECONDS > 0 and hasattr(cache, "incr_window")


def credentials_rate() -> tuple[int, int] | None:
    """The "credentials" throttle rate (REST_FRAMEWORK's DEFAULT_THROTTLE_RATES), read now, as
    (requests, window seconds); None when the rate is off."""
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(THROTTLE_SCOPE)
    if not rate:
        return None
    count, period = rate.split("/")
    return int(count), _PERIODS[period[0]]


def request_count_and_read(*, user_pk: int, key: str, rate: tuple[int, int] | None) -> object:
    """Count the request against the user's rate and read the cached value under `key`: one
    Redis round trip. Raises Throttled over the rate."""
    if rate is None:
        return cache.get(key)
    limit, window = rate
    counter_key = rate_counter_key(THROTTLE_SCOPE, user_pk)
    incr_window = getattr(cache, "incr_window", None)
    if incr_window is not None:  # appserver.cache.RedisCache
        hits, seconds_left, raw = incr_window(counter_key, window, get_key=key)
        allowed = hits <= limit
    else:  # the embedded default's local-memory cache: same rule, several operations
        cache.add(counter_key, 0, timeout=window)
        try:
            hits = cache.incr(counter_key)
        except ValueError:  # the window ended between add and incr
            cache.set(counter_key, 1, timeout=window)
            hits = 1
        allowed, seconds_left, raw = hits <= limit, window, cache.get(key)
    if not allowed:
        retry_after = max(1, math.ceil(seconds_left))
        raise Throttled(
            f"Too many credential requests. Retry in {retry_after} seconds.",
            retry_after=retry_after,
        )
    return raw
