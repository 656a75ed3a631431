"""Active content is not an image: scriptable types, key extensions and file names."""

from __future__ import annotations

import pytest

from uploads.content_types import content_type_allowed, content_type_extension, filename_clean
from uploads.models import UploadTicket

URL = "/api/uploads/tickets/"


def _post(client, **body):
    payload = {"filename": "a.png", "size": 10, "content_type": "image/png", **body}
    return client.post(URL, payload, format="json")


@pytest.mark.parametrize(
    ("allowed", "wanted", "expected"),
    [
        (["image/*"], "image/png", True),
        (["image/*"], "image/svg+xml", False),
        (["*/*"], "text/html", False),
        (["*"], "application/javascript", False),
        (["*/*"], "application/xhtml+xml", False),
        (["application/*"], "application/xml", False),
        (["application/*"], "application/vnd.foo+xml", False),
        (["text/*"], "text/javascript", False),
        (["text/*"], "text/plain", True),
        (["image/*", "image/svg+xml"], "image/svg+xml", True),  # listed exactly: allowed
        (["text/html"], "Text/HTML; charset=utf-8", True),
        (["image/*"], "imagex/png", False),
    ],
)
def test_wildcards_never_allow_scriptable_types(settings, allowed, wanted, expected):
    settings.UPLOAD_ALLOWED_CONTENT_TYPES = allowed
    assert content_type_allowed(wanted) is expected


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["image/svg+xml", "text/html", "application/xhtml+xml"])
def test_a_ticket_for_active_content_is_refused(auth_client, settings, content_type):
    settings.UPLOAD_ALLOWED_CONTENT_TYPES = ["image/*", "text/*", "application/*"]
    response = _post(auth_client, filename="x.svg", content_type=content_type)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_type_not_allowed"
    assert UploadTicket.objects.count() == 0


@pytest.mark.parametrize(
    ("content_type", "ext"),
    [
        ("image/png", ".png"),
        ("image/jpeg", ".jpg"),
        ("image/webp", ".webp"),
        ("text/plain", ".txt"),
        ("application/pdf", ".pdf"),
        ("video/mp4", ".mp4"),
        ("application/octet-stream", ""),
        ("application/x-unheard-of", ""),
    ],
)
def test_the_extension_comes_from_the_type(content_type, ext):
    assert content_type_extension(content_type) == ext


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("filename", "content_type", "ext"),
    [
        ("page.html", "image/png", ".png"),
        ("run.bat", "text/plain", ".txt"),
        ("photo.JPEG", "image/jpeg", ".jpg"),
        ("clip", "video/mp4", ".mp4"),
    ],
)
def test_the_key_extension_matches_the_declared_type(auth_client, filename, content_type, ext):
    response = _post(auth_client, filename=filename, content_type=content_type)
    assert response.status_code == 201, response.content
    ticket = UploadTicket.objects.get()
    assert response.json()["key"] == ticket.key
    assert ticket.key.endswith(f"/{ticket.id.hex}{ext}")
    assert ticket.filename == filename


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("evil\u202egnp.exe", "evilgnp.exe"),
        ("\u2067a\u2069.png", "a.png"),
        ("tab\there\x00.png", "tabhere.png"),
        ("bell\x07\x7f\x85.txt", "bell.txt"),
        ("Ünïcødé 😀.png", "Ünïcødé 😀.png"),
        ("  spaced.png ", "spaced.png"),
    ],
)
def test_file_names_lose_control_and_bidi_characters(given, kept):
    assert filename_clean(given) == kept


@pytest.mark.django_db
def test_a_ticket_stores_the_cleaned_name(auth_client):
    response = _post(auth_client, filename="C:\\x\\inv\u202eoice\x01.png")
    assert response.status_code == 201
    assert UploadTicket.objects.get().filename == "inv" + "oice.png"


@pytest.mark.django_db
def test_a_name_of_only_invisible_characters_is_refused(auth_client):
    response = _post(auth_client, filename="\u202e\x01\u2066")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"
    assert "filename" in response.json()["error"]["fields"]
