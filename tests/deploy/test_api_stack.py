"""The JSON API skips the browser middleware (sessions, auth, OTP, messages, CSP, static files:
appserver.middleware); the admin and the pages keep all of it."""

from __future__ import annotations

import pytest

from tests.helpers import bearer

pytestmark = pytest.mark.django_db


def test_api_responses_carry_no_session_or_page_headers(client, user):
    response = client.get("/api/uploads/usage/", headers=bearer(user))
    assert response.status_code == 200
    assert "Content-Security-Policy" not in response
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")
    # What every response keeps.
    assert response["X-Request-ID"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_a_session_cookie_means_nothing_to_the_api(admin_client):
    # Logged in to the admin: the API still wants a bearer token.
    response = admin_client.get("/api/uploads/usage/")
    assert response.status_code == 401
    assert admin_client.get("/admin/").status_code == 200


def test_the_admin_keeps_csp_sessions_and_csrf(client, staff_user, password):
    page = client.get("/admin/login/")
    assert page.status_code == 200
    assert "Content-Security-Policy" in page
    assert "csrftoken" in page.cookies
    csrf_client = type(client)(enforce_csrf_checks=True)
    refused = csrf_client.post(
        "/admin/login/", {"username": staff_user.username, "password": password}
    )
    assert refused.status_code == 403
