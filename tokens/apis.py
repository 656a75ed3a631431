"""GET/POST /api/sts/credentials/: the auth server the mobile OSS SDKs' providers call."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from accounts.authentication import StatelessJWTAuthentication
from accounts.permissions import IsActiveAccount
from policies.services import ALL_SCOPES, DEFAULT_SCOPE
from tokens.serializers import CredentialsOutputSerializer, StsErrorSerializer
from tokens.services import credentials_issue

_ERRORS = {
    400: OpenApiResponse(StsErrorSerializer, description="invalid_scope"),
    401: OpenApiResponse(StsErrorSerializer, description="Missing or invalid access token."),
    403: OpenApiResponse(
        StsErrorSerializer, description="account_suspended, or scope_not_allowed (staff scopes)."
    ),
    429: OpenApiResponse(StsErrorSerializer, description="throttled (per user), Retry-After."),
    503: OpenApiResponse(
        StsErrorSerializer,
        description=(
            "sts_unavailable, sts_timeout, sts_throttled, sts_refused, policy_unavailable or "
            "cache_unavailable; "
            "with Retry-After."
        ),
    ),
}
_SCOPE = OpenApiParameter(
    "scope",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    enum=list(ALL_SCOPES),
    default=DEFAULT_SCOPE,
    description=(
        "read, write (upload only) or readwrite: confined to the user's prefix. "
        "bucket_read / bucket_read_write (staff) and all (superusers) cover the whole bucket."
    ),
)
_DOC = (
    "Temporary STS credentials confined to the caller's own prefix in the bucket. The same "
    "credentials are handed out again until RefreshAfter; ask again after it. Never cached by "
    "intermediaries (Cache-Control: no-store)."
)


class CredentialsApi(APIView):
    # No user SELECT while Redis holds the token's epoch (accounts/token_state.py).
    authentication_classes = [StatelessJWTAuthentication]
    permission_classes = [IsActiveAccount]
    # The per-user "credentials" rate is enforced by the service, in the same Redis round trip
    # that reads the cached credentials (tokens.services.rate).
    throttle_classes: list = []
    error_format = "sts"

    def _respond(self, request: Request) -> Response:
        issued = credentials_issue(
            user=request.user,
            # "?scope=" is an invalid scope (400), not the default.
            scope=request.query_params.get("scope", DEFAULT_SCOPE),
            client_ip=BaseThrottle().get_ident(request),
            # META, not request.headers: that builds a dict of every header on each request.
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
        return Response(CredentialsOutputSerializer.from_issued(issued))

    @extend_schema(
        operation_id="sts_credentials_get",
        summary="Get STS credentials",
        description=_DOC,
        parameters=[_SCOPE],
        responses={200: CredentialsOutputSerializer, **_ERRORS},
        tags=["credentials"],
    )
    def get(self, request: Request) -> Response:
        return self._respond(request)

    @extend_schema(
        operation_id="sts_credentials_post",
        summary="Get STS credentials (POST)",
        description=_DOC + " Same as GET; no body.",
        parameters=[_SCOPE],
        request=None,
        responses={200: CredentialsOutputSerializer, **_ERRORS},
        tags=["credentials"],
    )
    def post(self, request: Request) -> Response:
        return self._respond(request)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        # Secrets in the body, errors included: no proxy or browser may keep a copy.
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response
