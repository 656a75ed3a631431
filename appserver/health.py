"""/healthz: is this instance able to serve? (database and cache reachable)"""

from __future__ import annotations

import logging
import time

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from appserver.errors import CacheUnavailable, DatabaseUnavailable, ServiceUnavailable

logger = logging.getLogger(__name__)


def _check(name: str, probe) -> dict:
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:  # any failure means "not healthy"; the kind is logged, not returned
        logger.warning("health check %s failed: %s", name, type(exc).__name__)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache() -> None:
    cache.set("healthz", "1", 10)
    if cache.get("healthz") != "1":
        raise RuntimeError("cache did not return what was stored")


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check("database", _database), "cache": _check("cache", _cache)}
    failed: list[ServiceUnavailable] = [
        error()
        for name, error in (("database", DatabaseUnavailable), ("cache", CacheUnavailable))
        if not checks[name]["ok"]
    ]
    if not failed:
        return JsonResponse({"status": "ok", "checks": checks})
    # The one error shape beside the checks, so clients and load balancers read it like any 503.
    error = failed[0]
    response = JsonResponse(
        {
            "status": "unavailable",
            "checks": checks,
            "error": {"code": error.code, "message": error.message},
        },
        status=503,
    )
    response["Retry-After"] = str(error.retry_after)
    return response
