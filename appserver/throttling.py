"""Throttle classes shared by the apps (DRF's, with the rate read from settings at request time)."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class SettingsRateThrottle(SimpleRateThrottle):
    """A SimpleRateThrottle whose rate is REST_FRAMEWORK's DEFAULT_THROTTLE_RATES[scope] now.

    DRF binds THROTTLE_RATES at import; reading the rate when asked makes settings changes (and
    tests' overrides) apply.
    """

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
