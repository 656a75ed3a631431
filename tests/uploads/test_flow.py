"""The happy paths over real HTTP: ticket → oss2 upload with the ticket's headers → the emulator
calls back → Upload row + the JSON OSS relays to the app; then list, detail, delete."""

from __future__ import annotations

import json

import oss2
import pytest
import requests

from tests.uploads.conftest import png_bytes
from uploads.models import StorageUsage, Upload, UploadTicket

pytestmark = pytest.mark.django_db(transaction=True)


def test_put_object_with_ticket_records_the_upload_and_relays_the_answer(live, user):
    data = b"hello, OSS"
    ticket = live.ticket(
        user,
        filename="Notes.TXT",
        size=len(data),
        content_type="text/plain",
        metadata={"album": "trip"},
    )
    assert ticket["key"].startswith(f"users/{user.public_id}/")
    assert ticket["key"].endswith(".txt")
    assert ticket["headers"]["x-oss-forbid-overwrite"] == "true"
    assert set(ticket["headers"]) == {
        "x-oss-callback",
        "x-oss-callback-var",
        "x-oss-forbid-overwrite",
    }
    assert ticket["callback"]["callbackUrl"] == live.callback_url()
    assert ticket["bucket"] == live.settings.OSS_BUCKET
    assert ticket["region"] == live.settings.OSS_REGION
    assert ticket["endpoint"] == live.settings.OSS_PUBLIC_ENDPOINT

    bucket = live.bucket(user)
    result = bucket.put_object(
        ticket["key"], data, headers={**ticket["headers"], "Content-Type": "text/plain"}
    )
    assert result.status == 200
    answer = json.loads(result.resp.read())

    upload = Upload.objects.get()
    assert answer == {
        "ok": True,
        "upload": {
            "id": upload.pk,
            "key": ticket["key"],
            "bucket": live.settings.OSS_BUCKET,
            "filename": "Notes.TXT",
            "size": len(data),
            "content_type": "text/plain",
            "etag": result.etag.upper(),
            "image_width": None,
            "image_height": None,
            "image_format": "",
            "metadata": {"album": "trip"},
            "created_at": upload.created_at.isoformat().replace("+00:00", "Z"),
        },
    }
    assert upload.owner == user
    assert upload.ticket_id is not None
    assert UploadTicket.objects.get().status == UploadTicket.Status.USED
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_used, usage.objects_used) == (len(data), 1)
    assert (usage.bytes_reserved, usage.objects_reserved) == (0, 0)


def test_png_gets_image_fields(live, user):
    image = png_bytes(7, 5)
    ticket = live.ticket(user, filename="dot.png", size=len(image), content_type="image/png")
    result = live.bucket(user).put_object(ticket["key"], image, headers=ticket["headers"])
    answer = json.loads(result.resp.read())
    assert answer["ok"] is True
    assert (answer["upload"]["image_width"], answer["upload"]["image_height"]) == (7, 5)
    assert answer["upload"]["image_format"] == "png"
    upload = Upload.objects.get()
    assert (upload.image_width, upload.image_height, upload.image_format) == (7, 5, "png")


def test_callback_recreates_a_usage_row_deleted_meanwhile(live, user):
    # The accept path's conditional UPDATE finds no row: the row is created, then counted.
    data = b"abc"
    ticket = live.ticket(user, filename="a.txt", size=len(data), content_type="text/plain")
    StorageUsage.objects.filter(user=user).delete()  # e.g. by staff in the admin
    result = live.bucket(user).put_object(
        ticket["key"], data, headers={**ticket["headers"], "Content-Type": "text/plain"}
    )
    assert json.loads(result.resp.read())["ok"] is True
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_used, usage.objects_used) == (len(data), 1)
    assert (usage.bytes_reserved, usage.objects_reserved) == (0, 0)
    assert Upload.objects.get().size == len(data)


def test_multipart_upload_completed_with_the_ticket_headers(live, user):
    part1, part2 = b"a" * (100 * 1024), b"b" * 1000
    size = len(part1) + len(part2)
    ticket = live.ticket(user, filename="clip.mp4", size=size, content_type="video/mp4")
    bucket = live.bucket(user)
    # Every request of the upload says it must not replace an object; the callback headers go
    # with the last one.
    no_overwrite = {"x-oss-forbid-overwrite": ticket["headers"]["x-oss-forbid-overwrite"]}
    upload_id = bucket.init_multipart_upload(
        ticket["key"], headers={**no_overwrite, "Content-Type": "video/mp4"}
    ).upload_id
    parts = [
        oss2.models.PartInfo(
            n, bucket.upload_part(ticket["key"], upload_id, n, chunk, headers=no_overwrite).etag
        )
        for n, chunk in ((1, part1), (2, part2))
    ]
    result = bucket.complete_multipart_upload(
        ticket["key"], upload_id, parts, headers=ticket["headers"]
    )
    assert result.status == 200
    answer = json.loads(result.resp.read())
    assert answer["ok"] is True
    assert answer["upload"]["size"] == size
    assert answer["upload"]["content_type"] == "video/mp4"
    upload = Upload.objects.get()
    assert upload.size == size
    assert upload.etag.endswith("-2")


def test_list_detail_and_delete(live, user, other_user):
    bucket = live.bucket(user)
    ids = []
    for name, data, ctype in (
        ("a.txt", b"aa", "text/plain"),
        ("b.png", png_bytes(2, 2), "image/png"),
    ):
        ticket = live.ticket(user, filename=name, size=len(data), content_type=ctype)
        bucket.put_object(ticket["key"], data, headers={**ticket["headers"], "Content-Type": ctype})
        ids.append(Upload.objects.get(key=ticket["key"]).pk)

    listing = live.api("GET", "/api/uploads/", user).json()
    assert [item["id"] for item in listing["results"]] == [ids[1], ids[0]]
    assert set(listing["results"][0]) == {
        "id",
        "key",
        "filename",
        "size",
        "content_type",
        "status",
        "created_at",
        "image_width",
        "image_height",
        "image_format",
        "metadata",
        "variants",
    }
    assert set(listing["results"][0]["variants"]) == {"thumbnail", "preview"}
    assert listing["results"][1]["variants"] == {}  # text/plain
    images = live.api("GET", "/api/uploads/?content_type=image/*", user).json()
    assert [item["id"] for item in images["results"]] == [ids[1]]
    texts = live.api("GET", "/api/uploads/?content_type=text/plain", user).json()
    assert [item["id"] for item in texts["results"]] == [ids[0]]
    later = live.api("GET", "/api/uploads/?created_after=2999-01-01T00:00:00Z", user).json()
    assert later["results"] == []
    bad = live.api("GET", "/api/uploads/?created_after=yesterday", user)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_input"

    # Another user's id is not reachable.
    assert live.api("GET", f"/api/uploads/{ids[0]}/", other_user).status_code == 404
    assert live.api("DELETE", f"/api/uploads/{ids[0]}/", other_user).status_code == 404
    assert live.api("GET", "/api/uploads/", other_user).json()["results"] == []

    detail = live.api("GET", f"/api/uploads/{ids[0]}/", user).json()
    assert detail["key"].endswith(".txt")
    download = requests.get(detail["download_url"], timeout=10)
    assert download.status_code == 200
    assert download.content == b"aa"
    assert 'filename="a.txt"' in download.headers["Content-Disposition"]

    key = detail["key"]
    assert live.api("DELETE", f"/api/uploads/{ids[0]}/", user).status_code == 204
    with pytest.raises(oss2.exceptions.NotFound):
        live.root_bucket().head_object(key)
    # Idempotent: a second DELETE is 204 again; the row stays, marked deleted, out of the list.
    assert live.api("DELETE", f"/api/uploads/{ids[0]}/", user).status_code == 204
    assert Upload.objects.get(pk=ids[0]).status == Upload.Status.DELETED
    assert live.api("GET", f"/api/uploads/{ids[0]}/", user).status_code == 404
    assert [i["id"] for i in live.api("GET", "/api/uploads/", user).json()["results"]] == [ids[1]]
    usage = live.api("GET", "/api/uploads/usage/", user).json()
    assert (usage["bytes_used"], usage["objects_used"]) == (len(png_bytes(2, 2)), 1)
