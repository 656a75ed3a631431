"""Failed-login lockout (django-axes), for the API login and the admin alike.

Failures are counted per (username, client address): a guesser is stopped after
LOGIN_FAILURE_LIMIT wrong passwords, while the account's owner, on another address, still logs
in (a lock on the username alone would let anyone lock anyone out). Counters live in the
database (axes' AccessAttempt), shared by every worker and instance.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from rest_framework.throttling import BaseThrottle

from accounts.usernames import username_normalize
from appserver.errors import Throttled, error_response


def login_username(request: HttpRequest, credentials: dict | None) -> str | None:
    """The name failures are counted under: ``Demo`` and ``demo`` are one account."""
    username = (credentials or {}).get("username")
    if username is None:
        username = request.POST.get("username")
    if not isinstance(username, str):
        return None
    return username_normalize(username).casefold()


def client_ip(request: HttpRequest) -> str:
    """The same client address the API's throttles use (REMOTE_ADDR, or the address NUM_PROXIES
    trusted proxies put in X-Forwarded-For): a client cannot pick its own."""
    return BaseThrottle().get_ident(request)


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    message = (
        "Too many failed logins for this username from your address. "
        f"Retry in {max(1, round(seconds / 60))} minutes."
    )
    if request.path.startswith("/api/"):
        return error_response(Throttled(message, code="login_locked", retry_after=seconds))
    response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(seconds)
    return response
