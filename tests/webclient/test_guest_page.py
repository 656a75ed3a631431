"""The upload page's "Continue as guest", in headless Chromium against the live server and the
emulator: a guest account, then a real upload into the guest's own prefix."""

from __future__ import annotations

import pytest

from accounts.models import User
from scripts.demo_client import demo_png
from tests.webclient.conftest import headless_chromium
from uploads.models import Upload

pytestmark = [pytest.mark.slow(6)]


@pytest.fixture
def page_url(alibaba, live_server, settings) -> str:
    settings.OSS_CALLBACK_URL = live_server.url + "/api/oss/callback/"
    return live_server.url + "/upload/"


@pytest.mark.django_db(transaction=True)
def test_continue_as_guest_and_upload(page_url, chromium_path, tmp_path, settings):
    settings.GUEST_ENABLED = True
    image = tmp_path / "guest.png"
    image.write_bytes(demo_png(40, 30))
    errors: list[str] = []

    with headless_chromium(chromium_path) as browser:
        page = browser.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(page_url)
        page.click("#guest-submit")
        page.wait_for_selector("#upload-section:not([hidden])", timeout=10_000)
        who = page.inner_text("#username")
        page.set_input_files("#file-input", str(image))
        row = page.wait_for_selector(
            "#progress-list li.done, #progress-list li.failed", timeout=20_000
        )
        outcome = row.get_attribute("class"), row.inner_text()
        page.close()

    assert errors == []
    assert outcome[0] == "done", outcome[1]
    assert who == "a guest"
    guest = User.objects.get()
    assert guest.is_guest
    upload = Upload.objects.get()
    assert upload.owner == guest
    assert upload.key.startswith(f"users/{guest.public_id}/")


@pytest.mark.django_db(transaction=True)
def test_no_guest_button_when_guests_are_off(page_url, chromium_path, settings):
    settings.GUEST_ENABLED = False
    with headless_chromium(chromium_path) as browser:
        page = browser.new_page()
        page.goto(page_url)
        page.wait_for_selector("#login-form", timeout=10_000)
        buttons = page.query_selector_all("#guest-submit")
        page.close()
    assert buttons == []
