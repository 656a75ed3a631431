from __future__ import annotations

from accounts.throttles import _SettingsRateThrottle


class CredentialsThrottle(_SettingsRateThrottle):
    """Per user: minting credentials is what "denial of wallet" abuse goes after."""

    scope = "credentials"

    def get_cache_key(self, request, view) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
