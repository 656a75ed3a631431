"""List endpoints: the number of queries does not grow with the items."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.factories import UserFactory
from uploads.models import Upload


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
    # 1: the authenticated user; 2: the page.
    with django_assert_num_queries(2):
        response = auth_client.get("/api/uploads/")
    assert response.status_code == 200
    assert len(response.json()["results"]) == count


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
