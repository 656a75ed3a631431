from __future__ import annotations

from django.core.cache import cache as default_cache

from accounts.throttles import _SettingsRateThrottle


class CredentialsThrottle(_SettingsRateThrottle):
    """Per user: minting credentials is what "denial of wallet" abuse goes after.

    This endpoint is the hottest one, so with Redis the count is a fixed window kept in one round
    trip (appserver.cache.RedisCache.incr_window) rather than DRF's request log (a read and a
    write of a pickled list per request). A window admits at most the rate's number of requests;
    without Redis (the embedded default) DRF's sliding log is used.
    """

    scope = "credentials"
    cache = default_cache

    def get_cache_key(self, request, view) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}

    def allow_request(self, request, view) -> bool:
        incr_window = getattr(self.cache, "incr_window", None)
        if incr_window is None:
            return super().allow_request(request, view)
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        hits, self._remaining = incr_window(key, self.duration)
        return hits <= self.num_requests

    def wait(self) -> float | None:
        remaining = getattr(self, "_remaining", None)
        return float(remaining) if remaining is not None else super().wait()
