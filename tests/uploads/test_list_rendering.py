"""GET /api/uploads/ and POST /api/uploads/tickets/ render their answers without serializers
(uploads.serializers.upload_rows, ticket_body); what they render is exactly what the
documented serializers (UploadOutputSerializer, TicketOutputSerializer) render."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.factories import UploadFactory
from uploads import selectors
from uploads.models import Upload
from uploads.serializers import (
    TicketOutputSerializer,
    UploadOutputSerializer,
    ticket_body,
    ticket_fields,
    upload_rows,
)
from uploads.signing import ticket_issue_signed

pytestmark = pytest.mark.django_db


def _uploads(user) -> None:
    UploadFactory(owner=user, image_width=640, image_height=480, image_format="png")
    UploadFactory(owner=user, content_type="application/pdf", filename="report.pdf")
    jpeg = UploadFactory(owner=user, content_type="image/jpeg", metadata={"album": "Été", "n": "1"})
    # created_at is auto_now_add: set afterwards, with microseconds.
    Upload.objects.filter(pk=jpeg.pk).update(
        created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    )
    UploadFactory(owner=user, content_type="video/mp4", status=Upload.Status.ACTIVE)


def test_the_rows_are_what_the_serializer_renders(user, alibaba):
    _uploads(user)
    page = list(selectors.upload_list(user=user).order_by("-created_at", "-id"))
    variants = selectors.upload_variants(uploads=page)
    for upload in page:
        upload.variants = variants[upload.pk]
    assert any(v is not None for v in variants.values())
    assert any(v is None for v in variants.values())
    assert upload_rows(page) == UploadOutputSerializer(page, many=True).data


def test_the_list_endpoint_answers_the_rows(auth_client, user, alibaba):
    _uploads(user)
    response = auth_client.get("/api/uploads/")
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 4
    assert set(results[0]) == set(UploadOutputSerializer().fields)
    jpeg = next(r for r in results if r["content_type"] == "image/jpeg")
    assert jpeg["created_at"] == "2026-01-02T03:04:05.678901Z"
    assert jpeg["metadata"] == {"album": "Été", "n": "1"}
    assert set(jpeg["variants"]) == {"thumbnail", "preview"}
    assert next(r for r in results if r["content_type"] == "application/pdf")["variants"] == {}


@pytest.mark.parametrize("mode", ["sts", "url", "form"])
def test_the_ticket_answer_is_what_the_serializer_renders(user, alibaba, mode):
    """POST /api/uploads/tickets/ renders its answer without TicketOutputSerializer
    (uploads.serializers.ticket_body); it is exactly what the documented serializer renders."""
    signed = ticket_issue_signed(
        user=user,
        mode=mode,
        filename="a.png",
        size=1000,
        content_type="image/png",
        metadata={"album": "Été"},
    )
    body = ticket_body(signed)
    assert body == TicketOutputSerializer(ticket_fields(signed)).data
    assert ("upload" in body) is (mode != "sts")
    assert json.loads(json.dumps(body)) == body  # nothing left for the renderer to convert
