"""Report queries over the metadata store and the credential ledger: the ONE implementation
behind `manage.py report`, the staff API under /api/reports/ and the admin dashboard.

What counts (decided here, once):
- "Stored" reports (`usage`, `content-types`) count what takes space now: active uploads only.
  A *missing* upload's object is gone from the bucket and a *deleted* one was removed by its
  owner; neither occupies storage nor counts against a quota.
- "Activity" reports (`uploads-daily/weekly/monthly`, `top-uploaders`) count every upload
  recorded in the period whatever its status today, so history does not change when a file is
  deleted later.
- Dates are UTC days; `date_from`/`date_to` are inclusive and filter on the row's `created_at`.

How they stay fast on millions of rows (EXPLAINs in docs and bench/reports_bench.py):
- Unfiltered usage reads the per-user counters in `StorageUsage` (maintained by the upload
  services and reconciliation), so one user's summary costs the same at 10k or 10M rows; the
  last upload comes from the (owner, -created_at, -id) index, newest row first.
- Activity over a date range is read from the covering index (created_at) INCLUDE (owner,
  size, status, content_type) alone (index-only scans; uploads migration 0003, which also gives
  PostgreSQL statistics on the day/week/month expressions so it plans a small hash aggregate).
  Counting with COUNT(*) rather than COUNT(id) keeps those scans index-only.
- Refusals and credential grants are range scans on their created_at index

Modules: filters (the filters, the row types, shared query helpers), tables (one function per
report, and the REPORTS registry) and dashboard. Callers import from `reports.selectors`.
"""

from reports.selectors.dashboard import DashboardFigures, dashboard_figures
from reports.selectors.filters import (
    DEFAULT_LIMITS,
    MAX_LIMIT,
    ContentTypeRow,
    CredentialsRow,
    PeriodRow,
    RefusalRow,
    ReportFilters,
    TopUploaderRow,
    UsageRow,
)
from reports.selectors.tables import (
    REPORTS,
    ReportSpec,
    report_content_types,
    report_credentials_daily,
    report_refusals,
    report_top_uploaders,
    report_unsupported_filters,
    report_uploads_daily,
    report_uploads_monthly,
    report_uploads_weekly,
    report_usage,
    user_for_report,
)

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_LIMIT",
    "REPORTS",
    "ContentTypeRow",
    "CredentialsRow",
    "DashboardFigures",
    "PeriodRow",
    "RefusalRow",
    "ReportFilters",
    "ReportSpec",
    "TopUploaderRow",
    "UsageRow",
    "dashboard_figures",
    "report_content_types",
    "report_credentials_daily",
    "report_refusals",
    "report_top_uploaders",
    "report_unsupported_filters",
    "report_uploads_daily",
    "report_uploads_monthly",
    "report_uploads_weekly",
    "report_usage",
    "user_for_report",
]
