"""List endpoints: the number of queries does not grow with the items. The callback's accept
statement: its cost does not grow with the uploads in flight."""

from __future__ import annotations

import uuid
from functools import partial

import pytest
from django.db import connection
from django.utils import timezone

from tests.factories import UserFactory
from uploads.models import Upload
from uploads.services import ticket_issue
from uploads.services.accept_at_once import ACCEPT_AT_ONCE_SQL


def _uploads(owner, n: int) -> list[Upload]:
    return [
        Upload.objects.create(
            owner=owner,
            bucket="app-uploads",
            key=f"users/{owner.public_id}/{i}-{timezone.now().timestamp()}.png",
            filename=f"{i}.png",
            size=10 + i,
            content_type="image/png",
            image_width=1,
            image_height=2,
            image_format="png",
        )
        for i in range(n)
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("count", [1, 3])
def test_list_query_count(auth_client, user, django_assert_num_queries, count):
    _uploads(user, count)
    _uploads(UserFactory(), 2)  # someone else's, never listed
    # 1: the authenticated user; 2: the page. Signing each image's variants queries nothing.
    with django_assert_num_queries(2):
        response = auth_client.get("/api/uploads/")
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == count
    assert all(set(item["variants"]) == {"thumbnail", "preview"} for item in results)


@pytest.mark.django_db
def test_cursor_pagination_walks_newest_first(auth_client, user):
    made = _uploads(user, 5)
    seen = []
    url = "/api/uploads/?page_size=2"
    while url:
        body = auth_client.get(url).json()
        seen += [item["id"] for item in body["results"]]
        url = body["next"]
    assert seen == [u.pk for u in reversed(made)]


def _plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.django_db
def test_a_callback_reaches_its_ticket_by_primary_key(user, settings):
    """The accept statement (uploads/services/accept_at_once.py) reads one ticket row however
    many uploads are in flight, even when the statistics predate them: it must not walk the
    partial index of issued tickets and filter each one out."""
    settings.UPLOAD_QUOTA_OBJECTS = 10_000
    with connection.cursor() as cursor:
        # Statistics from a quiet moment, kept: no autovacuum refreshes them during the test.
        cursor.execute("ALTER TABLE uploads_uploadticket SET (autovacuum_enabled = false)")
        cursor.execute("ANALYZE uploads_uploadticket")
    issue = partial(ticket_issue, user=user, filename="a.txt", size=10, content_type="text/plain")
    for _ in range(400):  # uploads in flight
        issue()
    ticket = issue().ticket
    params = {
        "ticket_id": ticket.id,
        "bucket": ticket.bucket,
        "key": ticket.key,
        "public_id": user.public_id,
        "mode": "sts",
        "now": timezone.now(),
        "issued": "issued",
        "used": "used",
        "active": "active",
        "size": 10,
        "content_type": "text/plain",
        "etag": "E",
        "crc64": "1",
        "image_width": None,
        "image_height": None,
        "image_format": "",
        "oss_request_id": "R",
        "verified_at": None,
        "max_bytes": settings.UPLOAD_QUOTA_BYTES,
        "max_objects": settings.UPLOAD_QUOTA_OBJECTS,
        "event_uid": uuid.uuid4(),
    }
    with connection.cursor() as cursor:
        # Parameters bound on the client, as for every execution before the statement is
        # prepared (and always, with DB_PREPARE_THRESHOLD empty).
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + ACCEPT_AT_ONCE_SQL, params)
        (plan,) = cursor.fetchone()
    tickets_read = [
        node
        for node in _plan_nodes(plan[0]["Plan"])
        if node.get("Relation Name") == "uploads_uploadticket" and "Scan" in node["Node Type"]
    ]
    assert tickets_read, plan
    for node in tickets_read:
        assert node["Index Name"] == "uploads_uploadticket_pkey", node
        assert node.get("Rows Removed by Filter", 0) == 0, node
    assert plan[0]["Plan"]["Actual Rows"] == 1  # and the statement did accept it
