"""`make demo`'s client, run as a function against the app under live_server and the emulator:
the whole mobile flow (login, STS credentials, ticket, PutObject with the callback, list,
signed download) with oss2, over real HTTP."""

from __future__ import annotations

import pytest

from scripts.demo_client import DemoError, demo_png, run_demo
from tests.factories import PASSWORD, UserFactory
from uploads.models import Upload, UploadTicket


@pytest.fixture
def live_callbacks(alibaba, live_server, settings) -> str:
    settings.OSS_CALLBACK_URL = live_server.url + "/api/oss/callback/"
    return live_server.url


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("signature_version", ["v1", "v4"])
def test_demo_uploads_lists_and_downloads(live_callbacks, alibaba, signature_version):
    user = UserFactory()
    lines: list[str] = []

    result = run_demo(
        base_url=live_callbacks,
        username=user.username,
        password=PASSWORD,
        say=lines.append,
        signature_version=signature_version,
    )

    upload = Upload.objects.get(pk=result.upload_id)
    assert upload.owner == user
    assert upload.key == result.key
    assert upload.key.startswith(f"users/{user.public_id}/")
    assert upload.size == len(demo_png()) == result.size
    assert (upload.content_type, upload.image_width, upload.image_height) == ("image/png", 64, 48)
    assert upload.image_format == "png"
    assert upload.metadata == {"source": "make-demo"}
    assert result.downloaded == result.uploaded == demo_png()
    assert UploadTicket.objects.get(key=upload.key).status == "used"
    # Each of the six steps is announced, and no secret is printed whole.
    assert [line[:2] for line in lines if line[:1].isdigit()] == [
        "1.",
        "2.",
        "3.",
        "4.",
        "5.",
        "6.",
    ]
    printed = "\n".join(lines)
    assert PASSWORD not in printed
    assert "the secret and the " in printed


@pytest.mark.django_db(transaction=True)
def test_demo_reports_a_wrong_password(live_callbacks):
    user = UserFactory()
    with pytest.raises(DemoError, match=r"^log in: HTTP 401 .*invalid_credentials"):
        run_demo(
            base_url=live_callbacks, username=user.username, password="wrong", say=lambda _: None
        )
