"""The upload page end to end in headless Chromium: the page under live_server, the emulator as
STS + OSS (it sends the callbacks), ali-oss in the browser uploading straight to the bucket."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from scripts.demo_client import demo_png
from tests.factories import PASSWORD, UserFactory
from tests.webclient.conftest import headless_chromium
from uploads.models import Upload

pytestmark = [pytest.mark.slow(6)]

SCREENSHOT = Path("/tmp/webclient-upload-page.png")


@pytest.fixture
def page_url(alibaba, live_server, settings) -> str:
    settings.OSS_CALLBACK_URL = live_server.url + "/api/oss/callback/"
    return live_server.url + "/upload/"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("addressing", ["path-style", "virtual-host"])
def test_log_in_upload_and_see_the_thumbnail(
    page_url, chromium_path, tmp_path, settings, alibaba, addressing
):
    if addressing == "virtual-host":
        # A host name instead of the IP: ali-oss then puts the bucket in the host name
        # (app-uploads.localhost), which browsers resolve to the loopback address.
        settings.OSS_PUBLIC_ENDPOINT = alibaba.endpoint.replace("127.0.0.1", "localhost")
    user = UserFactory()
    image = tmp_path / "sunset.png"
    image.write_bytes(demo_png(640, 480))
    errors: list[str] = []
    oss_hosts: set[str] = set()
    image_requests: list[str] = []

    with headless_chromium(chromium_path) as browser:
        page = browser.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "request",
            lambda r: oss_hosts.add(urlsplit(r.url).netloc) if r.method == "PUT" else None,
        )
        page.on(
            "request",
            lambda r: image_requests.append(r.url) if r.resource_type == "image" else None,
        )
        page.goto(page_url)
        page.fill("#login-username", user.username)
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_selector("#upload-section:not([hidden])", timeout=10_000)
        assert page.inner_text("#username") == user.username
        # The list loads after the section shows: wait for it (times out if it never says so).
        page.wait_for_selector("#uploads-empty", state="visible", timeout=10_000)

        page.set_input_files("#file-input", str(image))
        row = page.wait_for_selector(
            "#progress-list li.done, #progress-list li.failed", timeout=20_000
        )
        assert row.get_attribute("class") == "done", row.inner_text()
        assert row.get_attribute("data-percent") == "100"
        assert page.eval_on_selector("#progress-list li.done progress", "p => p.value") == 100
        # The list reloads with the new upload; its tile is the thumbnail variant OSS derives
        # (a signed x-oss-process URL), not the original.
        thumb = page.wait_for_selector("#uploads li.upload img.thumb[src]", timeout=10_000)
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=thumb, timeout=10_000
        )
        natural = page.eval_on_selector(
            "#uploads li.upload img.thumb", "img => [img.naturalWidth, img.naturalHeight]"
        )
        listed = page.inner_text("#uploads li.upload .upload-name")
        meta = page.inner_text("#uploads li.upload .upload-meta")
        credentials_note = page.inner_text("#credentials")
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        page.close()

    assert errors == []
    port = urlsplit(alibaba.endpoint).port
    expected_host = {
        "path-style": f"127.0.0.1:{port}",
        "virtual-host": f"{settings.OSS_BUCKET}.localhost:{port}",
    }[addressing]
    assert oss_hosts == {expected_host}
    assert natural == [256, 192]  # fits 256 x 256
    (tile_request,) = [url for url in image_requests if urlsplit(url).port == port]
    assert "x-oss-process=image%2Fauto-orient%2C1%2Fresize%2C" in tile_request
    assert listed == "sunset.png"
    assert re.match(r"^\d+(\.\d)? KB · image/png · 640\u00d7480 · ", meta)
    assert credentials_note.startswith("Temporary key STS.")
    upload = Upload.objects.get(owner=user)
    assert upload.filename == "sunset.png"
    assert upload.size == image.stat().st_size
    assert (upload.image_width, upload.image_height, upload.image_format) == (640, 480, "png")
    assert upload.metadata == {"source": "upload-page"}
    assert upload.key.startswith(f"users/{user.public_id}/")


@pytest.mark.django_db(transaction=True)
def test_wrong_password_shows_the_servers_message(page_url, chromium_path):
    user = UserFactory()

    with headless_chromium(chromium_path) as browser:
        page = browser.new_page()
        page.goto(page_url)
        page.fill("#login-username", user.username)
        page.fill("#login-password", "not-the-password")
        page.click("#login-submit")
        page.wait_for_selector("#login-error:not([hidden])", timeout=10_000)
        message = page.inner_text("#login-error")
        upload_hidden = page.is_hidden("#upload-section")
        page.close()

    assert message == "Wrong username or password."
    assert upload_hidden


@pytest.mark.django_db(transaction=True)
def test_credentials_refresh_after_refresh_after_and_large_files_go_multipart(
    page_url, chromium_path, tmp_path
):
    user = UserFactory()
    small = tmp_path / "first.png"
    small.write_bytes(demo_png(32, 32))
    large = tmp_path / "notes.txt"
    large.write_bytes(b"0123456789abcdef" * (160 * 1024))  # 2.5 MiB: three 1 MiB parts
    credential_calls: list[str] = []
    part_uploads: list[str] = []

    with headless_chromium(chromium_path) as browser:
        page = browser.new_page()
        page.clock.install()  # the page's clock; the servers keep the real one
        page.on(
            "request",
            lambda r: credential_calls.append(r.url) if "/api/sts/credentials/" in r.url else None,
        )
        page.on(
            "request",
            lambda r: part_uploads.append(r.url) if "partNumber=" in r.url else None,
        )
        page.goto(page_url)
        page.fill("#login-username", user.username)
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_selector("#upload-section:not([hidden])", timeout=10_000)
        page.set_input_files("#file-input", str(small))
        page.wait_for_selector("#uploads li.upload", timeout=20_000)
        calls_after_first = len(credential_calls)

        # Past RefreshAfter (Expiration - 10 min for 1-hour credentials): ali-oss must call
        # refreshSTSToken before the next request. The page's clock is now 55 minutes ahead of
        # the servers', so this also shows that requests are signed with the server's time
        # (ServerTime), or OSS would refuse them as RequestTimeTooSkewed.
        page.clock.fast_forward("55:00")
        page.set_input_files("#file-input", str(large))
        page.wait_for_function(
            # A function, not an expression: the page's CSP forbids the eval() of one.
            "() => document.querySelectorAll('#uploads li.upload').length === 2",
            timeout=30_000,
        )
        statuses = page.eval_on_selector_all(
            "#progress-list li", "rows => rows.map(r => r.className + ' ' + r.dataset.percent)"
        )
        names = page.eval_on_selector_all(
            "#uploads li.upload .upload-name", "names => names.map(n => n.textContent)"
        )
        page.close()

    assert calls_after_first == 1
    assert len(credential_calls) == 2
    assert statuses == ["done 100", "done 100"]
    assert names == ["notes.txt", "first.png"]
    assert sorted(part.split("partNumber=")[1].split("&")[0] for part in part_uploads) == [
        "1",
        "2",
        "3",
    ]
    rows = {u.filename: u for u in Upload.objects.filter(owner=user)}
    assert rows["notes.txt"].size == large.stat().st_size
    assert rows["notes.txt"].content_type == "text/plain"
    assert rows["first.png"].size == small.stat().st_size


@pytest.mark.django_db(transaction=True)
def test_a_refused_ticket_shows_the_servers_reason(page_url, chromium_path, tmp_path, settings):
    settings.UPLOAD_QUOTA_BYTES = 100
    user = UserFactory()
    image = tmp_path / "big.png"
    image.write_bytes(demo_png(64, 64))

    with headless_chromium(chromium_path) as browser:
        page = browser.new_page()
        page.goto(page_url)
        page.fill("#login-username", user.username)
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_selector("#upload-section:not([hidden])", timeout=10_000)
        page.set_input_files("#file-input", str(image))
        row = page.wait_for_selector("#progress-list li.failed", timeout=20_000)
        status = row.inner_text()
        code = row.get_attribute("data-code")
        listed = page.eval_on_selector_all("#uploads li.upload", "items => items.length")
        page.close()

    assert code == "quota_exceeded"
    assert status.startswith("big.png\nThis upload needs ")  # the server's own message
    assert listed == 0
    assert not Upload.objects.filter(owner=user).exists()


@pytest.mark.django_db(transaction=True)
def test_parallel_uploads_with_an_expired_access_token_share_one_refresh(
    page_url, chromium_path, tmp_path
):
    # A refresh token works once and a second use ends the session: three uploads meeting an
    # expired access token together must send one refresh between them, and all go through.
    from accounts.models import LoginSession

    user = UserFactory()
    files = []
    for n in range(3):
        path = tmp_path / f"photo{n}.png"
        path.write_bytes(demo_png(16 + n, 16))
        files.append(str(path))
    refreshes: list[str] = []

    with headless_chromium(chromium_path) as browser:
        page = browser.new_page()
        page.on(
            "request", lambda r: refreshes.append(r.url) if "/api/auth/refresh/" in r.url else None
        )
        page.goto(page_url)
        page.fill("#login-username", user.username)
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_selector("#upload-section:not([hidden])", timeout=10_000)
        page.wait_for_selector("#uploads-empty", state="visible", timeout=10_000)
        page.evaluate("sessionStorage.setItem('access', 'expired')")
        page.set_input_files("#file-input", files)
        page.wait_for_function(
            # A function, not an expression: the page's CSP forbids the eval() of one.
            "() => document.querySelectorAll('#progress-list li.done, #progress-list li.failed')"
            ".length === 3",
            timeout=30_000,
        )
        statuses = page.eval_on_selector_all(
            "#progress-list li", "rows => rows.map(r => r.className)"
        )
        page.close()

    assert statuses == ["done", "done", "done"]
    assert len(refreshes) == 1
    session = LoginSession.objects.get(user=user)
    assert (session.ended_at, session.end_reason) == (None, "")


def test_the_root_url_leads_to_the_upload_page(live_server):
    """Who opens the server's address lands on the upload page, not on a 404 (in DEBUG, one
    that lists every route)."""
    response = requests.get(live_server.url + "/", allow_redirects=False, timeout=10)
    assert (response.status_code, response.headers["Location"]) == (302, "/upload/")
    page = requests.get(live_server.url + "/", timeout=10)
    assert (page.status_code, page.url) == (200, live_server.url + "/upload/")


@pytest.mark.django_db(transaction=True)
def test_a_failed_callback_is_confirmed_not_uploaded_again(
    page_url, chromium_path, tmp_path, settings
):
    # Nobody listens at the callback URL: OSS stores the object and answers 203 CallbackFailed.
    settings.OSS_CALLBACK_URL = "http://127.0.0.1:9/api/oss/callback/"
    user = UserFactory()
    image = tmp_path / "lost.png"
    image.write_bytes(demo_png(32, 16))
    writes: list[str] = []
    confirmations: list[int] = []

    with headless_chromium(chromium_path) as browser:
        page = browser.new_page()
        page.on(
            "request",
            lambda r: (
                writes.append(r.method)
                if r.method in ("PUT", "POST") and "/users/" in r.url
                else None
            ),
        )
        page.on(
            "response",
            lambda r: confirmations.append(r.status) if r.url.endswith("/confirm/") else None,
        )
        page.goto(page_url)
        page.fill("#login-username", user.username)
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_selector("#upload-section:not([hidden])", timeout=10_000)
        page.set_input_files("#file-input", str(image))
        row = page.wait_for_selector(
            "#progress-list li.done, #progress-list li.failed", timeout=20_000
        )
        status = row.inner_text()
        page.wait_for_selector("#uploads li.upload", timeout=10_000)
        listed = page.inner_text("#uploads li.upload .upload-name")
        page.close()

    assert status == "lost.png\n100% uploaded (confirmed)"
    assert writes == ["PUT"]  # the bytes went up once
    assert confirmations == [200]
    assert listed == "lost.png"
    upload = Upload.objects.get(owner=user)
    assert (upload.size, upload.content_type) == (image.stat().st_size, "image/png")
    assert upload.verified_at is not None
