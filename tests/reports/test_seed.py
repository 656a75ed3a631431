"""seed_demo_data: the rows it promises, counters that match them, a progress bar."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models import Count, Max, Min, Sum
from django.utils import timezone

from reports.seeding import CONTENT_TYPES
from reports.selectors import ReportFilters, report_uploads_daily, report_usage
from tokens.models import CredentialGrant
from uploads.models import CallbackRefusal, StorageUsage, Upload

pytestmark = pytest.mark.django_db


def test_seed_demo_data(settings):
    err, out = io.StringIO(), io.StringIO()
    call_command(
        "seed_demo_data",
        "--uploads",
        "1000",
        "--users",
        "7",
        "--seed",
        "5",
        "--batch-size",
        "300",
        stdout=out,
        stderr=err,
    )
    assert out.getvalue().startswith(
        "Seeded 7 users, 1,000 uploads, 5 refusals and 200 credential grants in "
    )
    assert "uploads            [##############################] 100.0% 1,000/1,000" in (
        err.getvalue()
    )
    assert Upload.objects.count() == 1000
    assert CallbackRefusal.objects.count() == 5
    assert CredentialGrant.objects.count() == 200
    assert Upload.objects.values("owner").distinct().count() == 7
    types = {c[0] for c in CONTENT_TYPES}
    assert set(Upload.objects.values_list("content_type", flat=True)) <= types
    assert Upload.objects.filter(bucket=settings.OSS_BUCKET).count() == 1000
    span = Upload.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    now = timezone.now()
    assert now - timedelta(days=180, minutes=1) < span["first"] < span["last"] <= now
    statuses = dict(Upload.objects.values_list("status").annotate(n=Count("id")))
    assert set(statuses) == {"active", "deleted", "missing"}
    assert statuses["active"] > 900
    # Every key lives in its owner's prefix.
    for key, public_id in Upload.objects.values_list("key", "owner__public_id")[:50]:
        assert key.startswith(f"users/{public_id}/")
    # Counters agree with the active rows, per user and in total.
    for usage in StorageUsage.objects.all():
        rows = Upload.objects.filter(owner=usage.user, status="active").aggregate(
            n=Count("id"), b=Sum("size")
        )
        assert (usage.objects_used, usage.bytes_used) == (rows["n"], rows["b"] or 0)
    assert sum(r.objects for r in report_usage(filters=ReportFilters())) == statuses["active"]
    assert sum(r.uploads for r in report_uploads_daily(filters=ReportFilters())) == 1000
