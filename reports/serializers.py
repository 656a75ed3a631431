"""Report input: the same validation for the API's query string and the command's options."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from appserver.errors import InvalidInput
from reports.selectors import MAX_LIMIT, ReportFilters, ReportSpec, user_for_report

_CONTENT_TYPE = r"^[A-Za-z0-9][\w.+-]*/(\*|[A-Za-z0-9][\w.+-]*)$"
# Public names (query parameters / command options) -> ReportFilters field.
PARAMS = {
    "from": "date_from",
    "to": "date_to",
    "user": "user",
    "content_type": "content_type",
    "limit": "limit",
}


class ReportFiltersSerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        # "from" is a Python keyword, so the fields are declared here rather than as attributes.
        fields = {
            "from": serializers.DateField(required=False, help_text="First day (UTC), inclusive."),
            "to": serializers.DateField(required=False, help_text="Last day (UTC), inclusive."),
            "user": serializers.RegexField(
                r"^[^\x00]*[^\s\x00][^\x00]*$",  # not blank, no NUL (refused by the field)
                required=False,
                max_length=150,
                help_text="Username or public id.",
            ),
            "content_type": serializers.RegexField(
                _CONTENT_TYPE,
                required=False,
                max_length=255,
                help_text='Exact type ("image/png") or a family ("image/*").',
            ),
            "limit": serializers.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT),
        }
        # With a report's `accepts` in the context (its schema), only the filters it applies.
        accepts = self.context.get("accepts")
        if accepts is not None:
            fields = {name: field for name, field in fields.items() if PARAMS[name] in accepts}
        return fields

    def validate_user(self, value: str):
        user = user_for_report(ref=value)
        if user is None:
            raise serializers.ValidationError("No user has this username or public id.")
        return user

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("from"), attrs.get("to")
        if start and end and start > end:
            raise serializers.ValidationError({"to": ["Must not be before 'from'."]})
        return attrs


def report_filters_parse(*, spec: ReportSpec, data: dict[str, Any]) -> ReportFilters:
    """Validated filters for `spec`; a filter the report does not use is refused, not ignored."""
    # An empty value ("?user=") is refused by the field like any invalid one, not read as absent.
    given = {k: v for k, v in data.items() if v is not None}
    unknown = sorted(k for k in given if k not in PARAMS)
    inapplicable = sorted(k for k in given if k in PARAMS and PARAMS[k] not in spec.accepts)
    if unknown or inapplicable:
        raise InvalidInput(
            "Some filters do not apply to this report.",
            fields={
                **{k: ["Unknown filter."] for k in unknown},
                **{k: [f"Does not apply to the {spec.name} report."] for k in inapplicable},
            },
        )
    serializer = ReportFiltersSerializer(data=given)
    if not serializer.is_valid():
        raise InvalidInput(fields=serializer.errors)
    return ReportFilters(**{PARAMS[k]: v for k, v in serializer.validated_data.items()})
