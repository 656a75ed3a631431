"""The admin dashboard: staff only, linked from the admin index, showing the right figures."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from tests.factories import StorageUsageFactory, UserFactory
from tests.reports.conftest import make_upload

pytestmark = pytest.mark.django_db

URL = "/admin/reports/reportsdashboard/"


@pytest.fixture
def recent(db):
    """Uploads on today and 2 days ago, so the 30-day window always holds them."""
    today = timezone.localdate()
    dana = UserFactory(username="dana")
    noon = datetime.combine(today, time(12), tzinfo=UTC)
    make_upload(dana, "image/jpeg", 1500, noon, "active")
    make_upload(dana, "image/jpeg", 2500, noon - timedelta(days=2), "active")
    make_upload(dana, "video/mp4", 3 * 1024**2, noon - timedelta(days=2, hours=1), "active")
    StorageUsageFactory(user=dana, objects_used=3, bytes_used=4000 + 3 * 1024**2)
    return today


def test_staff_sees_figures_and_chart(client, staff_user, recent):
    client.force_login(staff_user)
    response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    figures = response.context["figures"]
    assert (figures.users_with_uploads, figures.objects_stored) == (1, 3)
    assert figures.bytes_stored == 4000 + 3 * 1024**2
    assert (figures.uploads_in_period, figures.bytes_in_period) == (3, 4000 + 3 * 1024**2)
    assert '<div class="value">3</div><div class="label">objects stored</div>' in html
    assert "3.0 MiB" in html
    # One bar per day of the window; the two days with uploads carry their figures.
    assert html.count('<rect class="bar"') == 30
    today, two_days_ago = recent.isoformat(), (recent - timedelta(days=2)).isoformat()
    assert f'data-day="{today}" data-uploads="1" data-bytes="1500"' in html
    assert f'data-day="{two_days_ago}" data-uploads="2" data-bytes="{2500 + 3 * 1024**2}"' in html
    assert 'class="bytes-line"' in html
    assert "Never run." in html


def test_linked_from_admin_index(client, staff_user):
    client.force_login(staff_user)
    html = client.get("/admin/").content.decode()
    assert f'href="{URL}"' in html


def test_staff_without_superuser_rights_still_sees_it(client, recent):
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 200


def test_non_staff_is_sent_to_login(client, user):
    client.force_login(user)
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
