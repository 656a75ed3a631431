"""Request rate and latency per endpoint, for every request Django answers.

The endpoint label is the URL route pattern that matched (`/api/uploads/<int:upload_id>/`),
never the path, so ids never become series; requests no route matched (404s, static files
whitenoise answered before routing) share one label. The first middleware, so its time covers
all the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from appserver.metrics.definitions import REQUEST_DURATION, REQUESTS

UNROUTED = "<unrouted>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _label(route: str) -> str:
    return route if route == UNROUTED else "/" + route


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # The labelled children by (route, method, status): after the first request of each,
        # recording is a dict lookup and two increments. Bounded by routes x methods x codes.
        self._children: dict[tuple[str, str, int], tuple] = {}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        match = request.resolver_match
        route = match.route if match is not None else UNROUTED
        method = request.method if request.method in _METHODS else "other"
        key = (route, method, response.status_code)
        children = self._children.get(key)
        if children is None:
            children = self._children.setdefault(
                key,
                (
                    REQUESTS.labels(_label(route), method, str(response.status_code)),
                    REQUEST_DURATION.labels(_label(route), method),
                ),
            )
        children[0].inc()
        children[1].observe(elapsed)
        return response
