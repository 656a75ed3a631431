"""The project's one error shape.

Every API error is rendered as::

    {"error": {"code": "quota_exceeded", "message": "A human sentence.", "fields": {...}}}

`code` is stable and machine-readable; `message` is for people; `fields` appears only for input
validation errors. Endpoints consumed by the official OSS mobile SDKs (the STS credentials
endpoint) set ``error_format = "sts"`` on the view and get the SDKs' shape instead:
``{"StatusCode": 503, "ErrorCode": "...", "ErrorMessage": "..."}`` - same exceptions, same codes.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, JsonResponse
from redis import exceptions as redis_errors
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)


class AppError(Exception):
    """Base of every error the API reports on purpose."""

    status: int = 400
    code: str = "bad_request"
    message: str = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        fields: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.fields = fields
        self.retry_after = retry_after
        super().__init__(self.message)


class InvalidInput(AppError):
    status, code, message = 400, "invalid_input", "The request has invalid fields."


class NotAuthenticated(AppError):
    status, code, message = 401, "not_authenticated", "Log in first: send a valid access token."


class TokenNotValid(NotAuthenticated):
    code, message = (
        "token_not_valid",
        "The token is invalid, expired or already used. Log in again.",
    )


class PermissionDenied(AppError):
    status, code, message = 403, "permission_denied", "You are not allowed to do this."


class AccountSuspended(PermissionDenied):
    code, message = "account_suspended", "This account is suspended. Contact support."


class NotFound(AppError):
    status, code, message = 404, "not_found", "Not found."


class MethodNotAllowed(AppError):
    status, code, message = 405, "method_not_allowed", "This method is not allowed here."


class Conflict(AppError):
    status, code, message = 409, "conflict", "The request conflicts with the current state."


class Throttled(AppError):
    status, code, message = 429, "throttled", "Too many requests. Retry later."


class ServiceUnavailable(AppError):
    status, code, message = 503, "service_unavailable", "A service is unavailable. Retry later."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("retry_after", 5)
        super().__init__(message, **kwargs)


class CacheUnavailable(ServiceUnavailable):
    code, message = "cache_unavailable", "The cache is unavailable. Retry later."


class DatabaseUnavailable(ServiceUnavailable):
    code, message = "database_unavailable", "The database is unavailable or busy. Retry later."


# Failures of a backing service, not of the request: the client should retry, and the server
# recovers by itself (redis-py and Django reconnect on the next request). A Redis ResponseError
# other than READONLY (a failover in progress) is a bug, not an outage, and stays a 500.
_CACHE_DOWN = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError)
# OperationalError also covers SQLite's "database is locked" and PostgreSQL's lock or statement
# timeouts and serialization failures: all "retry later", none a fault of the request.
_DATABASE_DOWN = (DatabaseOperationalError, DatabaseInterfaceError)


def service_unavailable_for(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 for an exception that means a backing service is down, else None."""
    if isinstance(exc, _CACHE_DOWN):
        logger.warning("The cache is unavailable: %s: %s", type(exc).__name__, exc)
        return CacheUnavailable()
    if isinstance(exc, _DATABASE_DOWN):
        logger.warning("The database is unavailable: %s: %s", type(exc).__name__, exc)
        return DatabaseUnavailable()
    return None


def _body(request_view: Any, *, status: int, code: str, message: str, fields: Any) -> dict:
    if getattr(request_view, "error_format", None) == "sts":
        return {"StatusCode": status, "ErrorCode": code, "ErrorMessage": message}
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _from_drf(exc: drf.APIException) -> AppError:
    if isinstance(exc, drf.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return InvalidInput(fields=detail)
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        # simplejwt puts the precise reason ("token_not_valid") in the detail's code.
        code = exc.get_codes()
        code = code.get("code") if isinstance(code, dict) else code
        message = exc.detail.get("detail") if isinstance(exc.detail, dict) else exc.detail
        return NotAuthenticated(
            str(message or NotAuthenticated.message),
            code=str(code) if code and code != "not_authenticated" else None,
        )
    if isinstance(exc, drf.Throttled):
        wait = int(exc.wait) + 1 if exc.wait is not None else None
        return Throttled(
            f"Too many requests. Retry in {wait} seconds." if wait else None, retry_after=wait
        )
    if isinstance(exc, drf.PermissionDenied):
        return PermissionDenied(str(exc.detail))
    if isinstance(exc, drf.NotFound):
        return NotFound()
    error = AppError(str(exc.detail), code=str(exc.default_code))
    error.status = exc.status_code
    return error


def render_error(error: AppError, view: Any = None) -> Response:
    return _with_retry_after(
        Response(
            _body(
                view,
                status=error.status,
                code=error.code,
                message=error.message,
                fields=error.fields,
            ),
            status=error.status,
        ),
        error,
    )


def error_response(error: AppError) -> JsonResponse:
    """The one error shape from a plain Django view (the few hot endpoints that skip DRF)."""
    body = _body(
        None, status=error.status, code=error.code, message=error.message, fields=error.fields
    )
    return _with_retry_after(JsonResponse(body, status=error.status), error)


def _with_retry_after(response, error: AppError):
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception leaves as the one error shape, never a trace."""
    view = context.get("view")
    if isinstance(exc, Http404):
        error: AppError = NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        error = PermissionDenied()
    elif isinstance(exc, AppError):
        error = exc
    elif isinstance(exc, drf.APIException):
        error = _from_drf(exc)
    elif (unavailable := service_unavailable_for(exc)) is not None:
        error = unavailable
    else:
        logger.exception("Unhandled error in %s", type(view).__name__ if view else "view")
        error = AppError("An unexpected error occurred. It has been logged.", code="server_error")
        error.status = 500
    set_rollback()
    response = render_error(error, view)
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _plain(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


# Django-level handlers, for URLs outside DRF views (unknown paths, crashes in middleware).
def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _plain(400, "bad_request", "The request could not be understood.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _plain(403, "permission_denied", "You are not allowed to do this.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _plain(404, "not_found", f"Nothing is served at {request.path}.")


def handler500(request: HttpRequest) -> JsonResponse:
    return _plain(500, "server_error", "An unexpected error occurred. It has been logged.")
