"""Admin pages render for staff, including thumbnails, the CSV export and quota overrides."""

from __future__ import annotations

import io
import re
from html import unescape

import pytest
import requests
from PIL import Image

from tests.factories import (
    CallbackRefusalFactory,
    StorageUsageFactory,
    UploadFactory,
)
from tests.uploads.conftest import photo_jpeg, stored_upload
from uploads.models import StorageUsage, UploadTicket


@pytest.fixture
def rows(user):
    upload = UploadFactory(
        owner=user,
        key=f"users/{user.public_id}/x.png",
        filename="=cmd.png",
        size=2048,
        image_width=3,
        image_height=4,
        image_format="png",
    )
    CallbackRefusalFactory(owner=None, bucket="b", key="k")
    StorageUsageFactory(user=user, bytes_used=2048, objects_used=1)
    return upload


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/admin/uploads/upload/",
        "/admin/uploads/upload/?status=active&content_type=image%2Fpng&q=x.png",
        "/admin/uploads/uploadticket/",
        "/admin/uploads/callbackrefusal/",
        "/admin/uploads/storageusage/",
    ],
)
def test_changelists_render(admin_client, rows, url):
    response = admin_client.get(url)
    assert response.status_code == 200


@pytest.mark.django_db
def test_upload_list_shows_human_size_and_a_signed_thumbnail(admin_client, rows):
    html = admin_client.get("/admin/uploads/upload/").content.decode()
    assert "2.0\xa0KB" in html
    assert "<img src=" in html
    assert "Expires" in html or "x-oss-expires" in html.lower()
    detail = admin_client.get(f"/admin/uploads/upload/{rows.pk}/change/")
    assert detail.status_code == 200


@pytest.mark.django_db
def test_the_preview_is_the_thumbnail_variant(admin_client, user, settings, alibaba):
    photo = stored_upload(
        settings, user, name="big.jpg", data=photo_jpeg(1600, 1200), content_type="image/jpeg"
    )
    html = admin_client.get(f"/admin/uploads/upload/{photo.pk}/change/").content.decode()
    (src,) = re.findall(r'<img src="([^"]+)"', html)
    assert "x-oss-process=" in src
    response = requests.get(unescape(src), timeout=10)
    assert response.status_code == 200
    thumbnail = Image.open(io.BytesIO(response.content))
    assert (thumbnail.format, thumbnail.size) == ("WEBP", (256, 192))


@pytest.mark.django_db
def test_upload_list_survives_a_broken_storage_configuration(admin_client, rows, settings):
    settings.OSS_BUCKET = "Not_A_Valid_Bucket!"  # oss2 refuses to build a client for it
    response = admin_client.get("/admin/uploads/upload/")
    assert response.status_code == 200
    assert "(storage unavailable)" in response.content.decode()


@pytest.mark.django_db
def test_owner_filter(admin_client, rows, other_user):
    UploadFactory(owner=other_user, key="k2", size=1, content_type="text/plain")
    response = admin_client.get(f"/admin/uploads/upload/?owner__id__exact={other_user.pk}")
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
    assert other_user.username in response.content.decode()
    response = admin_client.get(f"/admin/uploads/upload/?owner__id__exact={rows.owner_id}")
    assert response.context["cl"].result_count == 1


@pytest.mark.django_db
def test_csv_export(admin_client, rows):
    response = admin_client.post(
        "/admin/uploads/upload/",
        {"action": "export_csv", "_selected_action": [rows.pk]},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    lines = response.content.decode().splitlines()
    assert lines[0].startswith("id,owner,bucket,key,filename,size")
    assert lines[1].split(",")[4] == "'=cmd.png"  # formula neutralised


@pytest.mark.django_db
def test_quota_override_on_the_user_page(admin_client, user, rows):
    page = admin_client.get(f"/admin/accounts/user/{user.pk}/change/")
    assert page.status_code == 200
    assert "storage quota" in page.content.decode().lower()
    response = admin_client.post(
        f"/admin/uploads/storageusage/{user.pk}/change/",
        {"max_bytes": "12345", "max_objects": ""},
    )
    assert response.status_code == 302
    usage = StorageUsage.objects.get(user=user)
    assert (usage.max_bytes, usage.max_objects, usage.bytes_used) == (12345, None, 2048)
    assert UploadTicket.objects.count() == 0
