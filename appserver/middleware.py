"""Request ids, 503s for views outside DRF when a backing service is down, and the browser-only
middleware that the JSON API skips."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from csp.middleware import CSPMiddleware as _CSPMiddleware
from django.conf import settings
from django.contrib.auth.middleware import (
    AuthenticationMiddleware as _AuthenticationMiddleware,
)
from django.contrib.messages.middleware import MessageMiddleware as _MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware as _SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django_otp.middleware import OTPMiddleware as _OTPMiddleware
from whitenoise.middleware import WhiteNoiseMiddleware as _WhiteNoiseMiddleware

from appserver.errors import error_response, service_unavailable_for
from appserver.logging import request_id_var

_VALID = re.compile(r"^[A-Za-z0-9._-]{8,128}$")


class RequestIdMiddleware:
    """Taken from a trusted proxy's X-Request-ID when well-formed, else generated."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


class ServiceUnavailableMiddleware:
    """Redis or the database down while a plain Django view runs (the OSS callback, the admin,
    the upload page): 503 with Retry-After in the one error shape instead of a 500 (DRF views
    get the same from appserver.errors.exception_handler)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        error = service_unavailable_for(exception)
        return None if error is None else error_response(error)


# --- The browser stack, skipped on the JSON API ------------------------------------------------
#
# The apps' API authenticates every request by its Authorization header (a JWT) and answers
# JSON: it reads no cookie, keeps no session, renders no page. Sessions, Django's authentication,
# OTP, messages, CSP and static files serve the admin, the upload page and the reports
# dashboard; on the API they only cost time (profiled: 14% of the function calls of a warm
# credentials request). Each is the stock middleware, passed through untouched on API paths
# (settings.API_PATH_PREFIXES); everything else gets it as before. Being subclasses, Django's
# admin checks still find them. CSRF stays stock everywhere (DRF's views are exempt anyway).


def api_path(path: str) -> bool:
    """Whether `path` is served by the JSON API (no cookies, no pages)."""
    return path.startswith(settings.API_PATH_PREFIXES)


class _BrowserOnly:
    """Runs the middleware it is mixed into for every path but the API's."""

    get_response: Callable[[HttpRequest], HttpResponse]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if api_path(request.path_info):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class CSPMiddleware(_BrowserOnly, _CSPMiddleware):
    pass


class WhiteNoiseMiddleware(_BrowserOnly, _WhiteNoiseMiddleware):
    pass


class SessionMiddleware(_BrowserOnly, _SessionMiddleware):
    pass


class AuthenticationMiddleware(_BrowserOnly, _AuthenticationMiddleware):
    pass


class OTPMiddleware(_BrowserOnly, _OTPMiddleware):
    pass


class MessageMiddleware(_BrowserOnly, _MessageMiddleware):
    pass
