"""Throttle classes shared by the apps: DRF's rule, with the rate read from settings at request
time and the request log kept in Redis so that the limit is exact across a fleet."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class SettingsRateThrottle(SimpleRateThrottle):
    """A SimpleRateThrottle whose rate is REST_FRAMEWORK's DEFAULT_THROTTLE_RATES[scope] now.

    DRF binds THROTTLE_RATES at import; reading the rate when asked makes settings changes (and
    tests' overrides) apply.

    In front of Redis (appserver.cache.RedisCache) the rule is DRF's (at most N requests in any
    window of the period), decided by one Redis script per request: DRF's own get-then-set of a
    pickled log lets concurrent requests on different workers overwrite each other's entries,
    so a fleet let through more than the rate, and it cost two round trips. Elsewhere (the
    embedded default's local-memory cache: one process) DRF's own code runs.
    """

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view) -> bool:
        hit = getattr(self.cache, "sliding_log_hit", None)
        if hit is None:
            return super().allow_request(request, view)
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        # Not DRF's key: its value there is a pickled list, a different Redis type.
        logged, self._wait = hit(
            f"throttle-log:{key}",
            window_seconds=self.duration,
            limit=self.num_requests,
            now=self.timer(),
        )
        return logged

    def wait(self) -> float | None:
        if hasattr(self, "_wait"):
            return self._wait
        return super().wait()
