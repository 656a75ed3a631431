"""The dashboard in a real browser (Debian's chromium, headless): the chart is drawn, not just sent.

Shares the upload page's browser setup (tests/webclient/conftest.py): system chromium, never a
downloaded one.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, time, timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from tests.factories import StorageUsageFactory, UserFactory
from tests.reports.conftest import make_upload
from tests.webclient.conftest import headless_chromium

pytestmark = [pytest.mark.slow(5)]

URL = "/admin/reports/reportsdashboard/"


@pytest.mark.django_db(transaction=True)
def test_dashboard_chart_renders_in_chromium(live_server, chromium_path, tmp_path):
    today = timezone.localdate()
    noon = datetime.combine(today, time(12), tzinfo=UTC)
    erin = UserFactory(username="erin")
    for days, size in ((0, 4000), (0, 6000), (3, 1000)):
        make_upload(erin, "image/png", size, noon - timedelta(days=days), "active")
    StorageUsageFactory(user=erin, objects_used=3, bytes_used=11000)
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value

    with headless_chromium(chromium_path) as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
        )
        page = context.new_page()
        page.goto(live_server.url + URL)
        assert page.inner_text("#fig-objects .value") == "3"
        assert page.inner_text("#fig-uploads .value") == "3"
        bars = page.eval_on_selector_all(
            "svg.daily-chart rect.bar",
            "els => els.map(e => [e.dataset.day, e.getBoundingClientRect().height])",
        )
        line = page.eval_on_selector(
            "svg.daily-chart polyline.bytes-line", "e => e.getBoundingClientRect().width"
        )
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        context.close()

    heights = dict(bars)
    assert len(heights) == 30
    tallest = heights[today.isoformat()]
    assert tallest > 50  # today's 2 uploads fill the axis (max 2)
    assert heights[(today - timedelta(days=3)).isoformat()] == pytest.approx(tallest / 2, rel=0.02)
    assert sum(1 for h in heights.values() if h == 0) == 28
    assert line > 500  # the bytes line spans the chart
    assert os.path.getsize(tmp_path / "dashboard.png") > 10_000
