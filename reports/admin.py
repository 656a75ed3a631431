"""Admin: the staff dashboard (figures + daily chart) and the reconciliation runs' findings."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from appserver.errors import ServiceUnavailable
from reports.charts import daily_chart_svg, human_bytes
from reports.models import ReconciliationFinding, ReconciliationRun, ReportsDashboard
from reports.routing import reports_reading
from reports.selectors import dashboard_figures


def _staff(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_staff)


class _ReadOnly(admin.ModelAdmin):
    """Runs and findings are records of what happened: nobody edits them by hand."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ReportsDashboard)
class ReportsDashboardAdmin(_ReadOnly):
    """The changelist of a table-less proxy is replaced by the dashboard page."""

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return _staff(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _staff(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        page = {
            **self.admin_site.each_context(request),
            "title": "Storage dashboard",
            "opts": self.model._meta,
        }
        try:
            with reports_reading() as source:
                figures = dashboard_figures(days=30)
                last_run = ReconciliationRun.objects.order_by("-started_at", "-id").first()
        except ServiceUnavailable as exc:
            # The replica is down or too far behind: say so, and never fall back to the primary.
            response = TemplateResponse(
                request, "admin/reports/dashboard.html", {**page, "unavailable": exc}, status=503
            )
            response["Retry-After"] = str(exc.retry_after)
            return response
        context = {
            **page,
            "source": source,
            "figures": figures,
            "stored": human_bytes(figures.bytes_stored),
            "reserved": human_bytes(figures.bytes_reserved),
            "period_bytes": human_bytes(figures.bytes_in_period),
            "chart": daily_chart_svg(figures.daily),
            "top_uploaders": [(r, human_bytes(r.bytes)) for r in figures.top_uploaders],
            "content_types": [(r, human_bytes(r.bytes)) for r in figures.content_types[:10]],
            "last_run": last_run,
            "last_run_url": (
                reverse("admin:reports_reconciliationrun_change", args=[last_run.pk])
                if last_run
                else None
            ),
        }
        return TemplateResponse(request, "admin/reports/dashboard.html", context)


class FindingInline(admin.TabularInline):
    model = ReconciliationFinding
    fields = ("kind", "action", "key", "owner", "size", "detail")
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # A run over a drifted bucket can find thousands: the inline shows the first ones and
        # the findings list (linked from the run) has them all, filterable.
        return super().get_queryset(request).select_related("owner").order_by("id")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(_ReadOnly):
    list_display = (
        "id",
        "started_at",
        "state",
        "prefix",
        "applied",
        "objects_listed",
        "rows_checked",
        "stray_objects",
        "unowned_objects",
        "missing_objects",
        "expired_tickets",
        "repaired",
        "errors",
    )
    list_filter = ("status", "applied")
    readonly_fields = (
        "started_at",
        "finished_at",
        "updated_at",
        "state",
        "bucket",
        "prefix",
        "applied",
        "stray_policy",
        "objects_listed",
        "rows_checked",
        "stray_objects",
        "unowned_objects",
        "missing_objects",
        "expired_tickets",
        "other_findings",
        "repaired",
        "errors",
        "error_message",
        "all_findings",
    )
    fields = readonly_fields

    @admin.display(description="status", ordering="status")
    def state(self, obj: ReconciliationRun) -> str:
        return obj.state

    def get_inlines(self, request: HttpRequest, obj=None):
        # The inline would load every finding; above a page of them, link to the list instead.
        if obj is not None and obj.findings_total <= 200:
            return [FindingInline]
        return []

    @admin.display(description="Findings")
    def all_findings(self, obj: ReconciliationRun) -> str:
        url = reverse("admin:reports_reconciliationfinding_changelist")
        url += f"?run__id__exact={obj.pk}"
        return format_html('<a href="{}">All {} findings of this run</a>', url, obj.findings_total)


@admin.register(ReconciliationFinding)
class ReconciliationFindingAdmin(_ReadOnly):
    list_display = ("id", "run", "kind", "action", "key", "owner", "size", "created_at")
    list_filter = ("kind", "action")
    search_fields = ("key",)
    list_select_related = ("run", "owner")
    readonly_fields = (
        "run",
        "kind",
        "action",
        "key",
        "owner",
        "size",
        "upload_id",
        "ticket_id",
        "detail",
        "created_at",
    )
    fields = readonly_fields
