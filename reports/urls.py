from django.urls import path

from reports import apis
from reports.selectors import REPORTS

urlpatterns = [
    path("", apis.ReportIndexApi.as_view(), name="reports-index"),
    *(
        path(f"{name}/", apis.ReportApi.as_view(report_name=name), name=f"report-{name}")
        for name in REPORTS
    ),
]
