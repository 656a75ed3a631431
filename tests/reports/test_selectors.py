"""Every report figure, exactly, on the known data set of conftest.py."""

from __future__ import annotations

from datetime import date

import pytest

from reports.selectors import (
    ContentTypeRow,
    CredentialsRow,
    PeriodRow,
    RefusalRow,
    ReportFilters,
    TopUploaderRow,
    dashboard_figures,
    report_content_types,
    report_credentials_daily,
    report_refusals,
    report_top_uploaders,
    report_uploads_daily,
    report_uploads_monthly,
    report_uploads_weekly,
    report_usage,
)
from tests.reports.conftest import at

pytestmark = pytest.mark.django_db


def usage_tuples(rows):
    return [(r.username, r.objects, r.bytes, r.last_upload_at) for r in rows]


def test_usage_from_counters_with_last_active_upload(known):
    rows = report_usage(filters=ReportFilters())
    assert usage_tuples(rows) == [
        ("alice", 3, 53000, at("2026-03-03T00:00:00")),  # the deleted 03-10 upload is not "last"
        ("bob", 2, 400, at("2026-04-15T18:30:00")),
    ]
    assert rows[0].public_id == known.alice.public_id


def test_usage_of_one_user_including_one_with_nothing(known):
    assert usage_tuples(report_usage(filters=ReportFilters(user=known.bob))) == [
        ("bob", 2, 400, at("2026-04-15T18:30:00"))
    ]
    assert usage_tuples(report_usage(filters=ReportFilters(user=known.carol))) == [
        ("carol", 0, 0, None)
    ]


def test_usage_limit(known):
    assert usage_tuples(report_usage(filters=ReportFilters(limit=1))) == [
        ("alice", 3, 53000, at("2026-03-03T00:00:00"))
    ]


def test_usage_by_date_counts_active_rows_created_in_range(known):
    rows = report_usage(filters=ReportFilters(date_from=date(2026, 3, 3)))
    assert usage_tuples(rows) == [
        ("alice", 1, 50000, at("2026-03-03T00:00:00")),
        ("bob", 2, 400, at("2026-04-15T18:30:00")),
    ]
    rows = report_usage(filters=ReportFilters(date_to=date(2026, 3, 2)))
    assert usage_tuples(rows) == [("alice", 2, 3000, at("2026-03-02T23:59:59"))]


def test_usage_by_content_type_family_and_exact(known):
    rows = report_usage(filters=ReportFilters(content_type="image/*"))
    assert usage_tuples(rows) == [
        ("alice", 2, 3000, at("2026-03-02T23:59:59")),
        ("bob", 2, 400, at("2026-04-15T18:30:00")),
    ]
    rows = report_usage(filters=ReportFilters(content_type="image/png", user=known.bob))
    assert usage_tuples(rows) == [("bob", 0, 0, None)]


def test_uploads_daily_counts_every_status(known):
    assert report_uploads_daily(filters=ReportFilters()) == [
        PeriodRow(date(2026, 3, 2), 2, 3000),
        PeriodRow(date(2026, 3, 3), 2, 50300),
        PeriodRow(date(2026, 3, 10), 1, 700),
        PeriodRow(date(2026, 4, 1), 1, 4000),
        PeriodRow(date(2026, 4, 15), 1, 100),
    ]


def test_uploads_daily_filters(known):
    filters = ReportFilters(date_from=date(2026, 3, 3), date_to=date(2026, 4, 1), user=known.bob)
    assert report_uploads_daily(filters=filters) == [
        PeriodRow(date(2026, 3, 3), 1, 300),
        PeriodRow(date(2026, 4, 1), 1, 4000),
    ]
    assert report_uploads_daily(filters=ReportFilters(content_type="image/jpeg")) == [
        PeriodRow(date(2026, 3, 2), 1, 1000),
        PeriodRow(date(2026, 3, 3), 1, 300),
        PeriodRow(date(2026, 3, 10), 1, 700),
        PeriodRow(date(2026, 4, 15), 1, 100),
    ]


def test_uploads_weekly_starts_on_monday(known):
    assert report_uploads_weekly(filters=ReportFilters()) == [
        PeriodRow(date(2026, 3, 2), 4, 53300),
        PeriodRow(date(2026, 3, 9), 1, 700),
        PeriodRow(date(2026, 3, 30), 1, 4000),
        PeriodRow(date(2026, 4, 13), 1, 100),
    ]


def test_uploads_monthly(known):
    assert report_uploads_monthly(filters=ReportFilters()) == [
        PeriodRow(date(2026, 3, 1), 5, 54000),
        PeriodRow(date(2026, 4, 1), 2, 4100),
    ]


def test_content_types_of_active_uploads(known):
    assert report_content_types(filters=ReportFilters()) == [
        ContentTypeRow("video/mp4", 1, 50000),
        ContentTypeRow("image/png", 1, 2000),
        ContentTypeRow("image/jpeg", 3, 1400),
    ]
    assert report_content_types(filters=ReportFilters(user=known.bob)) == [
        ContentTypeRow("image/jpeg", 2, 400),
    ]


def test_top_uploaders_count_every_upload_in_the_period(known):
    alice, bob = known.alice, known.bob
    assert report_top_uploaders(filters=ReportFilters()) == [
        TopUploaderRow(alice.pk, "alice", alice.public_id, 4, 53700),
        TopUploaderRow(bob.pk, "bob", bob.public_id, 3, 4400),
    ]
    assert report_top_uploaders(filters=ReportFilters(date_from=date(2026, 3, 4))) == [
        TopUploaderRow(bob.pk, "bob", bob.public_id, 2, 4100),
        TopUploaderRow(alice.pk, "alice", alice.public_id, 1, 700),
    ]
    assert report_top_uploaders(filters=ReportFilters(limit=1)) == [
        TopUploaderRow(alice.pk, "alice", alice.public_id, 4, 53700),
    ]


def test_refusals_by_reason(known):
    assert report_refusals(filters=ReportFilters()) == [
        RefusalRow("quota_exceeded", "Quota exceeded", 2),
        RefusalRow("size_mismatch", "Size differs from the declared size", 1),
    ]
    assert report_refusals(filters=ReportFilters(user=known.bob)) == [
        RefusalRow("quota_exceeded", "Quota exceeded", 1),
    ]
    assert report_refusals(filters=ReportFilters(content_type="image/*")) == [
        RefusalRow("size_mismatch", "Size differs from the declared size", 1),
    ]
    assert report_refusals(filters=ReportFilters(date_to=date(2026, 3, 5))) == [
        RefusalRow("quota_exceeded", "Quota exceeded", 1),
    ]


def test_credentials_per_day(known):
    assert report_credentials_daily(filters=ReportFilters()) == [
        CredentialsRow(date(2026, 3, 2), 3, 2),
        CredentialsRow(date(2026, 3, 4), 1, 1),
    ]
    assert report_credentials_daily(filters=ReportFilters(user=known.bob)) == [
        CredentialsRow(date(2026, 3, 2), 1, 1),
    ]
    assert report_credentials_daily(filters=ReportFilters(date_from=date(2026, 3, 3))) == [
        CredentialsRow(date(2026, 3, 4), 1, 1),
    ]


def test_dashboard_figures(known):
    figures = dashboard_figures(days=30, today=date(2026, 4, 15))
    assert (figures.users_with_uploads, figures.objects_stored, figures.bytes_stored) == (
        2,
        5,
        53400,
    )
    assert figures.bytes_reserved == 5000
    # 2026-03-17 .. 2026-04-15: u6 (04-01) and u7 (04-15); one refusal (04-02); no grants.
    assert (figures.uploads_in_period, figures.bytes_in_period) == (2, 4100)
    assert (figures.refusals_in_period, figures.credentials_in_period) == (1, 0)
    assert len(figures.daily) == 30
    assert figures.daily[0] == PeriodRow(date(2026, 3, 17), 0, 0)
    assert figures.daily[15] == PeriodRow(date(2026, 4, 1), 1, 4000)
    assert figures.daily[-1] == PeriodRow(date(2026, 4, 15), 1, 100)
    assert [r.username for r in figures.top_uploaders] == ["bob"]
