"""The reports, one function each, and REPORTS, the registry the command, the API and the
dashboard read."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from django.apps import apps
from django.db.models import (
    Count,
    Max,
    OuterRef,
    Q,
    Subquery,
    Sum,
)
from django.db.models.functions import TruncDay, TruncMonth, TruncWeek

from accounts.models import User
from reports.selectors.filters import (
    ContentTypeRow,
    CredentialsRow,
    PeriodRow,
    RefusalRow,
    ReportFilters,
    TopUploaderRow,
    UsageRow,
    _content_type_q,
    _day,
    _in_range,
    _limit,
    _uploads,
)
from uploads.models import CallbackRefusal, StorageUsage, Upload


# --- Reports -------------------------------------------------------------------------------
def report_usage(*, filters: ReportFilters) -> list[UsageRow]:
    """Per user: active objects, their bytes and the last upload; biggest users first.

    With no date or content-type filter the figures are the quota counters (StorageUsage), so
    the cost does not grow with the uploads table. With one, they are summed from the rows.
    A user filter always yields exactly one row, zeros included.
    """
    if filters.date_from or filters.date_to or filters.content_type:
        return _usage_from_rows(filters)
    last_upload = (
        Upload.objects.filter(owner=OuterRef("user_id"), status=Upload.Status.ACTIVE)
        .order_by("-created_at", "-id")
        .values("created_at")[:1]
    )
    qs = StorageUsage.objects.select_related("user").annotate(last=Subquery(last_upload))
    # One named user is shown even at zero; a listing shows only users storing something.
    qs = qs.filter(user=filters.user) if filters.user else qs.filter(objects_used__gt=0)
    rows = [
        UsageRow(
            user_id=u.user_id,
            username=u.user.username,
            public_id=u.user.public_id,
            objects=u.objects_used,
            bytes=u.bytes_used,
            last_upload_at=u.last,
        )
        for u in qs.order_by("-bytes_used", "user__username")[: _limit(filters, "usage")]
    ]
    if filters.user is not None and not rows:
        rows = [_zero_usage(filters.user)]
    return rows


def _zero_usage(user: User) -> UsageRow:
    return UsageRow(
        user_id=user.pk,
        username=user.username,
        public_id=user.public_id,
        objects=0,
        bytes=0,
        last_upload_at=None,
    )


def _names(owner_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    # Grouping by owner_id alone lets PostgreSQL hash-aggregate straight off the covering index;
    # the names of the few users shown are then fetched in one small query.
    return {
        pk: (username, public_id)
        for pk, username, public_id in User.objects.filter(pk__in=list(owner_ids)).values_list(
            "pk", "username", "public_id"
        )
    }


def _usage_from_rows(filters: ReportFilters) -> list[UsageRow]:
    grouped = list(
        _uploads(filters, active_only=True)
        .values("owner_id")
        .annotate(objects=Count("*"), total=Sum("size"), last=Max("created_at"))
        .order_by("-total", "owner_id")[: _limit(filters, "usage")]
    )
    names = _names(r["owner_id"] for r in grouped)
    rows = [
        UsageRow(
            user_id=r["owner_id"],
            username=names[r["owner_id"]][0],
            public_id=names[r["owner_id"]][1],
            objects=r["objects"],
            bytes=r["total"],
            last_upload_at=r["last"],
        )
        for r in grouped
    ]
    if filters.user is not None and not rows:
        rows = [_zero_usage(filters.user)]
    return rows


def _report_periods(filters: ReportFilters, trunc: Callable[..., Any]) -> list[PeriodRow]:
    qs = (
        _uploads(filters, active_only=False)
        .annotate(period=trunc("created_at"))
        .values("period")
        .annotate(uploads=Count("*"), total=Sum("size"))
        .order_by("period")
    )
    return [PeriodRow(period=_day(r["period"]), uploads=r["uploads"], bytes=r["total"]) for r in qs]


def report_uploads_daily(*, filters: ReportFilters) -> list[PeriodRow]:
    """Uploads recorded and their bytes, per UTC day (days without uploads are left out)."""
    return _report_periods(filters, TruncDay)


def report_uploads_weekly(*, filters: ReportFilters) -> list[PeriodRow]:
    """Per ISO week, labelled by its Monday."""
    return _report_periods(filters, TruncWeek)


def report_uploads_monthly(*, filters: ReportFilters) -> list[PeriodRow]:
    """Per calendar month, labelled by its first day."""
    return _report_periods(filters, TruncMonth)


def report_content_types(*, filters: ReportFilters) -> list[ContentTypeRow]:
    """Active objects and bytes per content type, biggest first."""
    qs = (
        _uploads(filters, active_only=True)
        .values("content_type")
        .annotate(objects=Count("*"), total=Sum("size"))
        .order_by("-total", "content_type")
    )
    return [
        ContentTypeRow(content_type=r["content_type"], objects=r["objects"], bytes=r["total"])
        for r in qs
    ]


def report_top_uploaders(*, filters: ReportFilters) -> list[TopUploaderRow]:
    """Users ranked by bytes uploaded in the period (every upload recorded, see above)."""
    grouped = list(
        _uploads(filters, active_only=False)
        .values("owner_id")
        .annotate(uploads=Count("*"), total=Sum("size"))
        .order_by("-total", "-uploads", "owner_id")[: _limit(filters, "top-uploaders")]
    )
    names = _names(r["owner_id"] for r in grouped)
    return [
        TopUploaderRow(
            user_id=r["owner_id"],
            username=names[r["owner_id"]][0],
            public_id=names[r["owner_id"]][1],
            uploads=r["uploads"],
            bytes=r["total"],
        )
        for r in grouped
    ]


def report_refusals(*, filters: ReportFilters) -> list[RefusalRow]:
    """Refused upload callbacks per reason, most frequent first."""
    qs = CallbackRefusal.objects.all()
    if filters.user is not None:
        qs = qs.filter(owner=filters.user)
    if filters.content_type:
        qs = qs.filter(_content_type_q(filters.content_type))
    qs = (
        _in_range(qs, filters)
        .values("reason")
        .annotate(refusals=Count("*"))
        .order_by("-refusals", "reason")
    )
    labels = dict(CallbackRefusal.Reason.choices)
    return [
        RefusalRow(
            reason=r["reason"], label=str(labels.get(r["reason"], "")), refusals=r["refusals"]
        )
        for r in qs
    ]


def report_credentials_daily(*, filters: ReportFilters) -> list[CredentialsRow]:
    """STS credentials issued per UTC day and how many distinct users received them."""
    grant = apps.get_model("tokens", "CredentialGrant")
    qs = grant.objects.all()
    if filters.user is not None:
        qs = qs.filter(user=filters.user)
    qs = (
        _in_range(qs, filters)
        .annotate(day=TruncDay("created_at"))
        .values("day")
        .annotate(grants=Count("*"), users=Count("user_id", distinct=True))
        .order_by("day")
    )
    return [CredentialsRow(day=_day(r["day"]), grants=r["grants"], users=r["users"]) for r in qs]


# --- Registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportSpec:
    name: str
    title: str
    run: Callable[..., list[Any]]
    row_type: type
    # Filters that mean something for this report; others are refused, not silently ignored.
    accepts: frozenset[str] = field(
        default=frozenset({"date_from", "date_to", "user", "content_type"})
    )

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.row_type))


_ALL = frozenset({"date_from", "date_to", "user", "content_type"})
REPORTS: dict[str, ReportSpec] = {
    spec.name: spec
    for spec in (
        ReportSpec("usage", "Storage used per user", report_usage, UsageRow, _ALL | {"limit"}),
        ReportSpec("uploads-daily", "Uploads per day", report_uploads_daily, PeriodRow),
        ReportSpec("uploads-weekly", "Uploads per week", report_uploads_weekly, PeriodRow),
        ReportSpec("uploads-monthly", "Uploads per month", report_uploads_monthly, PeriodRow),
        ReportSpec("content-types", "Content types", report_content_types, ContentTypeRow),
        ReportSpec(
            "top-uploaders", "Top uploaders", report_top_uploaders, TopUploaderRow, _ALL | {"limit"}
        ),
        ReportSpec("refusals", "Refused callbacks by reason", report_refusals, RefusalRow),
        ReportSpec(
            "credentials-daily",
            "Credentials issued per day",
            report_credentials_daily,
            CredentialsRow,
            frozenset({"date_from", "date_to", "user"}),
        ),
    )
}


def report_unsupported_filters(*, spec: ReportSpec, given: Iterable[str]) -> list[str]:
    return sorted(set(given) - spec.accepts)


def user_for_report(*, ref: str) -> User | None:
    """A user named by username or public id (staff tooling; not an end-user lookup)."""
    return User.objects.filter(Q(username=ref) | Q(public_id=ref)).first()
