"""The Content-Security-Policy holds and the pages work under it, in headless Chromium: the
upload page (log in, upload to the emulator, thumbnail), the admin (log in, lists, a form, the
reports dashboard) and the API docs (Swagger UI renders the schema). Every violation the
browser reports (`securitypolicyviolation` events, console errors) fails the test."""

from __future__ import annotations

import oss2
import pytest

from scripts.demo_client import demo_png
from tests.factories import PASSWORD, UserFactory
from tests.webclient.conftest import headless_chromium
from uploads.models import Upload

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow(5)]

# Injected by Playwright before any page script, outside the page's CSP.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__violations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
});
"""


class Watched:
    """A page whose CSP header, violations and console errors are recorded."""

    def __init__(self, browser) -> None:
        self.page = browser.new_page()
        self.page.add_init_script(RECORD_VIOLATIONS)
        self.policies: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))
        self.page.on(
            "response",
            lambda r: (
                self.policies.append(r.headers.get("content-security-policy", ""))
                if r.request.resource_type == "document"
                else None
            ),
        )

    def _console(self, message) -> None:
        # Chromium asks every origin for /favicon.ico; the admin's pages name none.
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            self.console_errors.append(f"{message.text} ({message.location.get('url')})")

    def goto(self, url: str) -> None:
        self.page.goto(url)  # returns once the page and everything it loads have loaded

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__violations") + [
            e for e in self.console_errors if "Content Security Policy" in e
        ]


def test_the_upload_page_works_under_the_policy(
    alibaba, live_server, settings, tmp_path, chromium_path
):
    settings.OSS_CALLBACK_URL = live_server.url + "/api/oss/callback/"
    user = UserFactory()
    image = tmp_path / "under-csp.png"
    image.write_bytes(demo_png(40, 30))

    with headless_chromium(chromium_path) as browser:
        watched = Watched(browser)
        page = watched.page
        watched.goto(live_server.url + "/upload/")
        page.fill("#login-username", user.username)
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_selector("#upload-section:not([hidden])", timeout=10_000)
        page.set_input_files("#file-input", str(image))
        row = page.wait_for_selector("#progress-list li.done, #progress-list li.failed")
        outcome = row.get_attribute("class")
        thumb = page.wait_for_selector("#uploads li.upload img.thumb[src]", timeout=10_000)
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=thumb, timeout=10_000
        )
        violations = watched.violations()
        errors = watched.console_errors
        page.close()

    assert outcome == "done"
    assert violations == []
    assert errors == []
    policy = watched.policies[0]
    assert "script-src 'self'" in policy
    assert f"connect-src 'self' {alibaba.endpoint}" in policy
    assert "frame-ancestors 'none'" in policy


def test_the_admin_works_under_the_policy(
    alibaba, live_server, settings, staff_user, chromium_path
):
    # An upload whose object is in the bucket: the list shows its thumbnail from a signed URL.
    picture = demo_png(20, 10)
    key = f"users/{staff_user.public_id}/admin-thumb.png"
    root = oss2.Bucket(
        oss2.make_auth(settings.ALIBABA_ACCESS_KEY_ID, settings.ALIBABA_ACCESS_KEY_SECRET, "v4"),
        alibaba.endpoint,
        settings.OSS_BUCKET,
        region=settings.OSS_REGION,
    )
    root.put_object(key, picture, headers={"Content-Type": "image/png"})
    Upload.objects.create(
        owner=staff_user,
        bucket=settings.OSS_BUCKET,
        key=key,
        filename="admin-thumb.png",
        size=len(picture),
        content_type="image/png",
    )
    pages = [
        "/admin/uploads/upload/",
        "/admin/",
        "/admin/accounts/user/",
        f"/admin/accounts/user/{staff_user.pk}/change/",
        "/admin/reports/reportsdashboard/",
        "/admin/reports/reconciliationrun/",
    ]
    seen: dict[str, str] = {}
    with headless_chromium(chromium_path) as browser:
        watched = Watched(browser)
        page = watched.page
        watched.goto(live_server.url + "/admin/login/")
        page.fill("#id_username", staff_user.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools", timeout=10_000)
        for path in pages:
            watched.goto(live_server.url + path)
            seen[path] = page.title()
        watched.goto(live_server.url + "/admin/uploads/upload/")
        # The thumbnail is loading="lazy", which the load event does not wait for: wait until it
        # has finished, loaded or not (the assertion below tells which).
        page.wait_for_function(
            "() => document.querySelector('img.upload-thumb')?.complete", timeout=15_000
        )
        thumbnail = page.eval_on_selector(
            "img.upload-thumb",
            "img => [img.complete && img.naturalWidth, getComputedStyle(img).maxHeight]",
        )
        watched.goto(live_server.url + "/admin/reports/reportsdashboard/")
        dashboard_figure = page.eval_on_selector(
            "#fig-users", "el => getComputedStyle(el).borderStyle"
        )
        violations = watched.violations()
        errors = watched.console_errors
        page.close()

    assert all("Log in" not in title for title in seen.values()), seen
    assert thumbnail == [20, "48px"]  # loaded from the bucket, sized by the admin stylesheet
    assert dashboard_figure == "solid"  # the dashboard's own (nonced) style block applied
    assert violations == []
    assert errors == []
    assert watched.policies and all(
        "script-src 'self'" in p and "frame-ancestors 'none'" in p for p in watched.policies
    ), watched.policies


def test_the_api_docs_work_under_the_policy(live_server, chromium_path):
    with headless_chromium(chromium_path) as browser:
        watched = Watched(browser)
        page = watched.page
        watched.goto(live_server.url + "/api/docs/")
        page.wait_for_selector(".swagger-ui .information-container .title", timeout=15_000)
        title = page.inner_text(".swagger-ui .information-container .title")
        operations = page.eval_on_selector_all(".opblock-summary-path", "els => els.length")
        violations = watched.violations()
        errors = watched.console_errors
        page.close()

    assert title.startswith("OSS direct-upload app server")
    assert operations > 10
    assert violations == []
    assert errors == []
    assert "script-src 'self'" in watched.policies[0]
