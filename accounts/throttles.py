from __future__ import annotations

from appserver.throttling import SettingsRateThrottle


class LoginIPThrottle(SettingsRateThrottle):
    scope = "login_ip"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class RegisterThrottle(LoginIPThrottle):
    scope = "register"


class GuestThrottle(LoginIPThrottle):
    scope = "guest"


class OidcThrottle(LoginIPThrottle):
    scope = "oidc"
