"""GET /api/uploads/ is documented as what it returns: a page object, not a bare list."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_the_upload_list_is_documented_as_the_page_it_returns(client, auth_client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    documented = schema["paths"]["/api/uploads/"]["get"]["responses"]["200"]["content"]
    assert documented["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UploadPageOutput"
    }
    page = schema["components"]["schemas"]["UploadPageOutput"]
    assert page["properties"]["results"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/UploadOutput"},
    }
    assert page["properties"]["next"]["nullable"] is True
    answered = auth_client.get("/api/uploads/").json()
    assert set(answered) == set(page["properties"]) == set(page["required"])
