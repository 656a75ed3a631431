"""What a report is asked for (ReportFilters), the rows reports return, and the query helpers
they share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import (
    Q,
    QuerySet,
)
from django.utils import timezone

from accounts.models import User
from uploads.models import Upload

DEFAULT_LIMITS = {"usage": 100, "top-uploaders": 10}
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class ReportFilters:
    date_from: date | None = None
    date_to: date | None = None  # inclusive
    user: User | None = None
    content_type: str | None = None  # exact, or a family such as "image/*"
    limit: int | None = None


# --- Row types -----------------------------------------------------------------------------
@dataclass(frozen=True)
class UsageRow:
    user_id: int
    username: str
    public_id: str
    objects: int
    bytes: int
    last_upload_at: datetime | None


@dataclass(frozen=True)
class PeriodRow:
    period: date
    uploads: int
    bytes: int


@dataclass(frozen=True)
class ContentTypeRow:
    content_type: str
    objects: int
    bytes: int


@dataclass(frozen=True)
class TopUploaderRow:
    user_id: int
    username: str
    public_id: str
    uploads: int
    bytes: int


@dataclass(frozen=True)
class RefusalRow:
    reason: str
    label: str
    refusals: int


@dataclass(frozen=True)
class CredentialsRow:
    day: date
    grants: int
    users: int


# --- Helpers -------------------------------------------------------------------------------
def _bounds(filters: ReportFilters) -> tuple[datetime | None, datetime | None]:
    tz = timezone.get_current_timezone()
    start = datetime.combine(filters.date_from, time.min, tzinfo=tz) if filters.date_from else None
    end = (
        datetime.combine(filters.date_to + timedelta(days=1), time.min, tzinfo=tz)
        if filters.date_to
        else None
    )
    return start, end


def _in_range(qs: QuerySet, filters: ReportFilters, column: str = "created_at") -> QuerySet:
    start, end = _bounds(filters)
    if start is not None:
        qs = qs.filter(**{f"{column}__gte": start})
    if end is not None:
        qs = qs.filter(**{f"{column}__lt": end})
    return qs


def _content_type_q(content_type: str, column: str = "content_type") -> Q:
    if content_type.endswith("/*"):
        return Q(**{f"{column}__startswith": content_type[:-1]})
    return Q(**{column: content_type})


def _uploads(filters: ReportFilters, *, active_only: bool) -> QuerySet[Upload]:
    qs = Upload.objects.all()
    if active_only:
        qs = qs.filter(status=Upload.Status.ACTIVE)
    if filters.user is not None:
        qs = qs.filter(owner=filters.user)
    if filters.content_type:
        qs = qs.filter(_content_type_q(filters.content_type))
    return _in_range(qs, filters)


def _limit(filters: ReportFilters, name: str) -> int:
    return min(filters.limit or DEFAULT_LIMITS[name], MAX_LIMIT)


def _day(value: datetime | date) -> date:
    return value.date() if isinstance(value, datetime) else value
