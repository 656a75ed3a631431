"""Staff-only report endpoints: GET /api/reports/<name>/?from=&to=&user=&content_type=&limit="""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from appserver.schema import AutoSchema
from reports.formatting import rows_as_dicts
from reports.routing import reports_reading
from reports.selectors import REPORTS
from reports.serializers import PARAMS, ReportFiltersSerializer, report_filters_parse


class _ReportSchema(AutoSchema):
    """Documents only the filters the route's report applies: the others are refused (400)."""

    def get_override_parameters(self):
        spec = REPORTS[self.view.report_name]
        return [ReportFiltersSerializer(context={"accepts": spec.accepts})]


class ReportApi(APIView):
    """One report of reports/selectors/; which one is fixed per route (`report_name`)."""

    permission_classes = [IsAdminUser]
    report_name: str = ""
    schema = _ReportSchema()

    @extend_schema(
        responses={200: dict},
        description=(
            "Staff only. Filters that do not apply to the report are refused (400). Read from"
            " the reports replica when one is configured: its lag in seconds is in the"
            " Reports-Replica-Lag header, and a replica that is down or further behind than"
            " allowed answers 503 with Retry-After."
        ),
    )
    def get(self, request: Request) -> Response:
        spec = REPORTS[self.report_name]
        filters = report_filters_parse(spec=spec, data=dict(request.query_params.items()))
        with reports_reading() as source:  # the replica, or 503 when it is down or behind
            rows = spec.run(filters=filters)
        response = Response(
            {
                "report": spec.name,
                "title": spec.title,
                "columns": list(spec.columns),
                "rows": rows_as_dicts(rows),
            }
        )
        if source.replica:
            response["Reports-Replica-Lag"] = f"{source.lag_seconds:.1f}"
        return response


class ReportIndexApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(
            {
                "reports": [
                    {
                        "name": spec.name,
                        "title": spec.title,
                        "url": request.build_absolute_uri(f"{spec.name}/"),
                        "filters": sorted(p for p, f in PARAMS.items() if f in spec.accepts),
                    }
                    for spec in REPORTS.values()
                ]
            }
        )
