"""CORS (django-cors-headers): a web app on a listed origin may call the API a browser app needs
(log in, credentials, tickets, uploads) with its JWT; no other origin, and never the OSS
callback, the admin or the reports."""

from __future__ import annotations

import pytest
import requests

from tests.helpers import bearer

APP = "https://app.example.com"


def _preflight(url: str, origin: str, method: str = "POST") -> requests.Response:
    return requests.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=10,
    )


@pytest.fixture
def allowed(settings):
    settings.CORS_ALLOWED_ORIGINS = [APP]


@pytest.mark.parametrize(
    "path", ["/api/auth/login/", "/api/sts/credentials/", "/api/uploads/tickets/"]
)
def test_a_listed_origin_may_call_the_apps_api(live_server, allowed, path):
    response = _preflight(live_server.url + path, APP)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert {"authorization", "content-type"} <= set(
        response.headers["Access-Control-Allow-Headers"].split(", ")
    )
    assert "Access-Control-Allow-Credentials" not in response.headers  # JWT, no cookies


@pytest.mark.django_db(transaction=True)
def test_answers_expose_retry_after_and_the_request_id(live_server, allowed, user):
    response = requests.get(
        live_server.url + "/api/uploads/", headers={"Origin": APP, **bearer(user)}, timeout=10
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Expose-Headers"] == "Retry-After, X-Request-ID"


@pytest.mark.parametrize(
    ("path", "origin"),
    [
        ("/api/uploads/tickets/", "https://evil.example.com"),  # not listed
        ("/api/oss/callback/", APP),  # server to server
        ("/api/reports/usage/", APP),  # staff, from the admin's own origin
        ("/admin/login/", APP),
    ],
)
def test_nothing_else_gets_cors_headers(live_server, allowed, path, origin):
    response = _preflight(live_server.url + path, origin)
    assert "Access-Control-Allow-Origin" not in response.headers


def test_no_origin_is_allowed_by_default(live_server):
    response = _preflight(live_server.url + "/api/auth/login/", APP)
    assert "Access-Control-Allow-Origin" not in response.headers
