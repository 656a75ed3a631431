"""The ledger in the admin (read-only, no secrets) and the OpenAPI documentation."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import CredentialGrantFactory
from tests.helpers import CREDENTIALS_FIELDS
from tokens.models import CredentialGrant

pytestmark = pytest.mark.django_db


@pytest.fixture
def grant(user) -> CredentialGrant:
    return CredentialGrantFactory(
        user=user,
        scope="readwrite",
        access_key_id="STS.ledgerEntry0001",
        sts_request_id="REQ-1",
        client_ip="203.0.113.7",
        user_agent="MyApp/1.0",
        times_served=4,
    )


def test_ledger_list_filters_and_search(admin_client, grant, other_user):
    CredentialGrantFactory(user=other_user, scope="write", access_key_id="STS.otherEntry0002")
    url = reverse("admin:tokens_credentialgrant_changelist")
    page = admin_client.get(url)
    assert page.status_code == 200
    assert "STS.ledgerEntry0001" in page.content.decode()
    assert "STS.otherEntry0002" in page.content.decode()

    by_scope = admin_client.get(url, {"scope": "write"}).content.decode()
    assert "STS.otherEntry0002" in by_scope and "STS.ledgerEntry0001" not in by_scope
    by_user = admin_client.get(url, {"user__id__exact": grant.user_id}).content.decode()
    assert "STS.ledgerEntry0001" in by_user and "STS.otherEntry0002" not in by_user
    # The "Today" link of the date filter.
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    by_date = admin_client.get(
        url, {"created_at__gte": str(today), "created_at__lt": str(today + timedelta(days=1))}
    )
    assert by_date.status_code == 200
    assert "STS.ledgerEntry0001" in by_date.content.decode()
    found = admin_client.get(url, {"q": "ledgerEntry"}).content.decode()
    assert "STS.ledgerEntry0001" in found and "STS.otherEntry0002" not in found


def test_ledger_is_read_only(admin_client, grant):
    add = admin_client.get(reverse("admin:tokens_credentialgrant_add"))
    assert add.status_code == 403
    change_url = reverse("admin:tokens_credentialgrant_change", args=[grant.pk])
    detail = admin_client.get(change_url)
    assert detail.status_code == 200  # viewable ...
    assert 'name="_save"' not in detail.content.decode()  # ... not editable
    posted = admin_client.post(change_url, {"scope": "all", "times_served": 0})
    assert posted.status_code == 403
    delete = admin_client.post(
        reverse("admin:tokens_credentialgrant_delete", args=[grant.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    bulk = admin_client.post(
        reverse("admin:tokens_credentialgrant_changelist"),
        {"action": "delete_selected", "_selected_action": [grant.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    grant.refresh_from_db()
    assert grant.scope == "readwrite"
    assert grant.times_served == 4


def test_ledger_model_has_no_secret_fields():
    names = {field.name for field in CredentialGrant._meta.get_fields()}
    assert not {n for n in names if "secret" in n or "token" in n}


def test_schema_documents_the_credentials_endpoint(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    operations = schema["paths"]["/api/sts/credentials/"]
    assert set(operations) == {"get", "post"}
    for method in ("get", "post"):
        operation = operations[method]
        assert set(operation["responses"]) == {"200", "400", "401", "403", "429", "503"}
        assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/CredentialsOutput"
        }
        scope = next(p for p in operation["parameters"] if p["name"] == "scope")
        assert scope["in"] == "query"
        assert sorted(scope["schema"]["enum"]) == [
            "all",
            "bucket_read",
            "bucket_read_write",
            "read",
            "readwrite",
            "write",
        ]
    output = schema["components"]["schemas"]["CredentialsOutput"]
    assert set(output["required"]) == CREDENTIALS_FIELDS
    assert set(schema["components"]["schemas"]["StsError"]["properties"]) == {
        "StatusCode",
        "ErrorCode",
        "ErrorMessage",
    }


def test_docs_load_without_any_cdn(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for cdn in ("jsdelivr", "unpkg", "cdnjs", "cdn."):
        assert cdn not in html
    assets = re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", html)
    assert any("swagger-ui-bundle.js" in a for a in assets)
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        body = b"".join(served.streaming_content) if served.streaming else served.content
        assert len(body) > 100, asset
