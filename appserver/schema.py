"""The OpenAPI schema declares the error responses each operation can give, in the one error
shape (appserver/errors.py), derived from the view rather than repeated on every endpoint.

A view adds what cannot be derived with ``error_responses = {status: "description"}`` (the 409
of registration, the 401 of a refresh token, ...)."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable and machine-readable, e.g. quota_exceeded.")
    message = serializers.CharField(help_text="A human sentence.")
    fields = serializers.DictField(
        required=False, help_text="Per-field messages; only for input validation errors."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status, description in self._error_statuses().items():
            responses.setdefault(
                str(status),
                self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=description), str(status)
                ),
            )
        return responses

    def _error_statuses(self) -> dict[int, str]:
        view = self.view
        statuses: dict[int, str] = {}
        if self.method in ("POST", "PUT", "PATCH") or any(
            parameter.get("in") == "query" for parameter in self._get_parameters()
        ):
            statuses[400] = "invalid_input: the fields that are wrong are named in `fields`."
        if not all(isinstance(p, AllowAny) for p in view.get_permissions()):
            statuses[401] = "Missing, expired or revoked access token (token_not_valid)."
            statuses[403] = "account_suspended, or not allowed (staff-only endpoints)."
        if "{" in self.path:
            statuses[404] = "not_found: nothing of the caller's has this id."
        if view.get_throttles():
            statuses[429] = "throttled: retry after the Retry-After header's seconds."
        statuses.update(getattr(view, "error_responses", {}))
        statuses[503] = (
            "cache_unavailable or database_unavailable: retry after the Retry-After header's "
            "seconds."
        )
        return dict(sorted(statuses.items()))


# DRF's CharField refuses NUL characters in every request body; the schema says so wherever a
# string states nothing stricter, so generated clients and schemathesis know it.
NO_NUL = r"^[^\x00]*$"


def postprocess_request_strings(result: dict, generator, request, public) -> dict:
    """drf-spectacular hook: a no-NUL pattern on every free-form string of a request body."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request"):
            for field in component.get("properties", {}).values():
                _no_nul(field)
    return result


def _no_nul(field: dict) -> None:
    if field.get("type") == "string" and not field.keys() & {"pattern", "format", "enum"}:
        field["pattern"] = NO_NUL
    elif field.get("type") == "array":
        _no_nul(field.get("items", {}))
    elif isinstance(field.get("additionalProperties"), dict):
        _no_nul(field["additionalProperties"])
