"""The staff-only report API: same figures as the selectors, filters, and errors in one shape."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.helpers import bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(staff_user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=bearer(staff_user)["Authorization"])
    return client


def test_anonymous_is_401(api_client, known):
    response = api_client.get("/api/reports/usage/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_non_staff_is_403_in_the_error_shape(auth_client, known):
    for name in ("usage", "uploads-daily", "credentials-daily", ""):
        response = auth_client.get(f"/api/reports/{name}/".replace("//", "/"))
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"


def test_usage(staff_client, known):
    response = staff_client.get("/api/reports/usage/")
    assert response.status_code == 200
    assert response.json() == {
        "report": "usage",
        "title": "Storage used per user",
        "columns": ["user_id", "username", "public_id", "objects", "bytes", "last_upload_at"],
        "rows": [
            {
                "user_id": known.alice.pk,
                "username": "alice",
                "public_id": known.alice.public_id,
                "objects": 3,
                "bytes": 53000,
                "last_upload_at": "2026-03-03T00:00:00+00:00",
            },
            {
                "user_id": known.bob.pk,
                "username": "bob",
                "public_id": known.bob.public_id,
                "objects": 2,
                "bytes": 400,
                "last_upload_at": "2026-04-15T18:30:00+00:00",
            },
        ],
    }


def test_filters(staff_client, known):
    response = staff_client.get(
        "/api/reports/uploads-daily/",
        {"from": "2026-03-03", "to": "2026-04-01", "user": known.bob.public_id},
    )
    assert response.status_code == 200
    assert response.json()["rows"] == [
        {"period": "2026-03-03", "uploads": 1, "bytes": 300},
        {"period": "2026-04-01", "uploads": 1, "bytes": 4000},
    ]
    response = staff_client.get("/api/reports/content-types/", {"content_type": "image/*"})
    assert response.json()["rows"] == [
        {"content_type": "image/png", "objects": 1, "bytes": 2000},
        {"content_type": "image/jpeg", "objects": 3, "bytes": 1400},
    ]
    response = staff_client.get("/api/reports/top-uploaders/", {"limit": "1", "user": "bob"})
    assert [r["username"] for r in response.json()["rows"]] == ["bob"]
    response = staff_client.get("/api/reports/refusals/")
    assert response.json()["rows"] == [
        {"reason": "quota_exceeded", "label": "Quota exceeded", "refusals": 2},
        {"reason": "size_mismatch", "label": "Size differs from the declared size", "refusals": 1},
    ]
    response = staff_client.get("/api/reports/credentials-daily/", {"to": "2026-03-02"})
    assert response.json()["rows"] == [{"day": "2026-03-02", "grants": 3, "users": 2}]


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"from": "2026-13-01"}, ["from"]),
        ({"to": "yesterday"}, ["to"]),
        ({"from": "2026-03-05", "to": "2026-03-01"}, ["to"]),
        ({"user": "nobody-has-this-name"}, ["user"]),
        ({"content_type": "not a type"}, ["content_type"]),
        ({"limit": "0"}, ["limit"]),
        ({"limit": "many"}, ["limit"]),
        ({"colour": "red"}, ["colour"]),
    ],
)
def test_bad_input_is_400_invalid_input(staff_client, known, params, fields):
    response = staff_client.get("/api/reports/usage/", params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert sorted(error["fields"]) == fields


def test_filter_that_does_not_apply_is_refused(staff_client, known):
    response = staff_client.get("/api/reports/credentials-daily/", {"content_type": "image/png"})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "content_type": ["Does not apply to the credentials-daily report."]
    }


def test_index_lists_every_report(staff_client):
    response = staff_client.get("/api/reports/")
    assert response.status_code == 200
    reports = {r["name"]: r["filters"] for r in response.json()["reports"]}
    assert reports == {
        "usage": ["content_type", "from", "limit", "to", "user"],
        "uploads-daily": ["content_type", "from", "to", "user"],
        "uploads-weekly": ["content_type", "from", "to", "user"],
        "uploads-monthly": ["content_type", "from", "to", "user"],
        "content-types": ["content_type", "from", "to", "user"],
        "top-uploaders": ["content_type", "from", "limit", "to", "user"],
        "refusals": ["content_type", "from", "to", "user"],
        "credentials-daily": ["from", "to", "user"],
    }


def test_query_count_does_not_depend_on_rows(staff_client, known, django_assert_num_queries):
    # auth user lookup + the report query
    with django_assert_num_queries(2):
        staff_client.get("/api/reports/usage/")
    with django_assert_num_queries(3):  # + the user filter lookup
        staff_client.get("/api/reports/uploads-daily/", {"user": "alice"})
