"""Request ids, and 503s for views outside DRF when a backing service is down."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

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
