"""The upload page's "PostObject form" option in headless Chromium: a form ticket's fields and
the file posted straight to the bucket (a real multipart POST from the browser), no STS
credentials in the page; and a tampered form refused by OSS before anything is stored."""

from __future__ import annotations

from urllib.parse import urlsplit

import oss2
import pytest

from scripts.demo_client import demo_png
from tests.factories import PASSWORD, UserFactory
from tests.webclient.conftest import headless_chromium
from uploads.models import CallbackRefusal, Upload, UploadTicket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow(5)]


@pytest.fixture
def page_url(alibaba, live_server, settings) -> str:
    settings.OSS_CALLBACK_URL = live_server.url + "/api/oss/callback/"
    return live_server.url + "/upload/"


def _log_in(page, page_url, user) -> None:
    page.goto(page_url)
    page.fill("#login-username", user.username)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#upload-section:not([hidden])", timeout=10_000)
    page.wait_for_selector("#uploads-empty", state="visible", timeout=10_000)
    page.select_option("#upload-mode", "form")


def test_form_mode_uploads_without_credentials(
    page_url, chromium_path, tmp_path, settings, alibaba
):
    user = UserFactory()
    image = tmp_path / "sunset.png"
    image.write_bytes(demo_png(40, 30))
    errors: list[str] = []
    posts: list[str] = []
    credential_calls: list[str] = []

    with headless_chromium(chromium_path) as browser:
        page = browser.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "request",
            lambda r: posts.append(r.url) if r.method == "POST" and "/api/" not in r.url else None,
        )
        page.on(
            "request",
            lambda r: credential_calls.append(r.url) if "/api/sts/" in r.url else None,
        )
        _log_in(page, page_url, user)
        page.set_input_files("#file-input", str(image))
        row = page.wait_for_selector(
            "#progress-list li.done, #progress-list li.failed", timeout=20_000
        )
        outcome = (row.get_attribute("class"), row.inner_text())
        page.wait_for_selector("#uploads li.upload", timeout=10_000)
        listed = page.inner_text("#uploads li.upload .upload-name")
        page.close()

    assert errors == []
    assert outcome[0] == "done", outcome
    assert credential_calls == []  # the page never held credentials
    port = urlsplit(alibaba.endpoint).port
    bucket = settings.OSS_BUCKET
    assert posts == [f"http://127.0.0.1:{port}/{bucket}/"]  # where oss2 addresses the bucket
    assert listed == "sunset.png"
    upload = Upload.objects.get(owner=user)
    assert (upload.size, upload.content_type) == (image.stat().st_size, "image/png")
    assert upload.ticket.mode == UploadTicket.Mode.FORM


def test_a_tampered_form_is_refused_by_oss_and_nothing_is_stored(
    page_url, chromium_path, tmp_path, alibaba, settings
):
    """The browser's request is edited on its way (the key field): OSS's policy check refuses
    it, and the page shows OSS's code."""
    user = UserFactory()
    image = tmp_path / "pic.png"
    image.write_bytes(demo_png(8, 8))
    edited: list[str] = []

    def tamper(route):
        body = route.request.post_data_buffer
        key = body.split(b'name="key"\r\n\r\n', 1)[1].split(b"\r\n", 1)[0]
        edited.append(key.decode())
        route.continue_(post_data=body.replace(key, key[:-4] + b"-x.png", 1))

    with headless_chromium(chromium_path) as browser:
        page = browser.new_page()
        page.route(f"{alibaba.endpoint}/**", tamper)
        _log_in(page, page_url, user)
        page.set_input_files("#file-input", str(image))
        row = page.wait_for_selector("#progress-list li.failed", timeout=20_000)
        code, status = row.get_attribute("data-code"), row.inner_text()
        page.close()

    assert code == "AccessDenied"
    assert "Invalid according to Policy: Policy Condition failed" in status
    [key] = edited
    root = oss2.Bucket(
        oss2.make_auth(settings.ALIBABA_ACCESS_KEY_ID, settings.ALIBABA_ACCESS_KEY_SECRET, "v4"),
        alibaba.endpoint,
        settings.OSS_BUCKET,
        region=settings.OSS_REGION,
    )
    assert not root.object_exists(key)
    assert not root.object_exists(key[:-4] + "-x.png")
    assert Upload.objects.count() == 0
    assert CallbackRefusal.objects.count() == 0
    assert UploadTicket.objects.get().status == UploadTicket.Status.ISSUED
