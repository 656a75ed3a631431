"""The admin dashboard's figures."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

from django.apps import apps
from django.db.models import (
    Count,
    Q,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from reports.selectors.filters import (
    ContentTypeRow,
    PeriodRow,
    ReportFilters,
    TopUploaderRow,
    _in_range,
)
from reports.selectors.tables import (
    report_content_types,
    report_top_uploaders,
    report_uploads_daily,
)
from uploads.models import CallbackRefusal, StorageUsage


# --- Dashboard -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DashboardFigures:
    users_with_uploads: int
    objects_stored: int
    bytes_stored: int
    bytes_reserved: int
    uploads_in_period: int
    bytes_in_period: int
    refusals_in_period: int
    credentials_in_period: int
    days: int
    daily: list[PeriodRow]  # one row per day of the period, zeros included
    top_uploaders: list[TopUploaderRow]
    content_types: list[ContentTypeRow]


def dashboard_figures(*, days: int = 30, today: date | None = None) -> DashboardFigures:
    """The admin dashboard's main figures: storage now, and activity over the last `days`."""
    today = today or timezone.localdate()
    period = ReportFilters(date_from=today - timedelta(days=days - 1), date_to=today)
    totals = StorageUsage.objects.aggregate(
        users=Count("user_id", filter=Q(objects_used__gt=0)),
        objects=Coalesce(Sum("objects_used"), Value(0)),
        bytes=Coalesce(Sum("bytes_used"), Value(0)),
        reserved=Coalesce(Sum("bytes_reserved"), Value(0)),
    )
    by_day = {r.period: r for r in report_uploads_daily(filters=period)}
    daily = []
    for offset in range(days):
        day = period.date_from + timedelta(days=offset)  # type: ignore[operator]
        daily.append(by_day.get(day, PeriodRow(period=day, uploads=0, bytes=0)))
    refusals = _in_range(CallbackRefusal.objects.all(), period).count()
    grant = apps.get_model("tokens", "CredentialGrant")
    credentials = _in_range(grant.objects.all(), period).count()
    return DashboardFigures(
        users_with_uploads=totals["users"],
        objects_stored=totals["objects"],
        bytes_stored=totals["bytes"],
        bytes_reserved=totals["reserved"],
        uploads_in_period=sum(r.uploads for r in daily),
        bytes_in_period=sum(r.bytes for r in daily),
        refusals_in_period=refusals,
        credentials_in_period=credentials,
        days=days,
        daily=daily,
        top_uploaders=report_top_uploaders(filters=replace(period, limit=5)),
        content_types=report_content_types(filters=ReportFilters()),
    )
