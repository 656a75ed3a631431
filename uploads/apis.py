"""HTTP endpoints of the uploads app: thin views over services and selectors."""

from __future__ import annotations

import time
import uuid

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from accounts.authentication import StatelessJWTAuthentication
from accounts.permissions import IsActiveAccount
from appserver import metrics
from appserver.errors import (
    AppError,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    error_response,
)
from appserver.throttling import SettingsRateThrottle
from uploads import confirmation, oss, selectors, services, signing
from uploads.callback_signature import callback_verify
from uploads.serializers import (
    CallbackAnswerSerializer,
    TicketInputSerializer,
    TicketOutputSerializer,
    UploadDetailOutputSerializer,
    UploadListFilterSerializer,
    UploadPageOutputSerializer,
    UsageOutputSerializer,
    ticket_body,
    upload_rows,
)


class DatabaseUnavailable(ServiceUnavailable):
    code, message = "database_unavailable", "The database is unavailable. Retry later."


class TicketThrottle(SettingsRateThrottle):
    """Per user: minting tickets reserves quota, so it is rate-limited like credentials."""

    scope = "tickets"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class TicketCreateApi(APIView):
    authentication_classes = [StatelessJWTAuthentication]
    permission_classes = [IsActiveAccount]
    throttle_classes = [TicketThrottle]

    @extend_schema(request=TicketInputSerializer, responses={201: TicketOutputSerializer})
    def post(self, request: Request) -> Response:
        data = TicketInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            signed = signing.ticket_issue_signed(
                user=request.user,
                client_ip=BaseThrottle().get_ident(request),
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                **data.validated_data,
            )
        except services.QuotaExceeded:
            metrics.quota_refused(stage="ticket")
            raise
        return Response(ticket_body(signed), status=status.HTTP_201_CREATED)


class ConfirmThrottle(TicketThrottle):
    """Per user: each confirmation makes one HeadObject."""

    scope = "confirmations"


class TicketConfirmApi(APIView):
    """After 203 CallbackFailed or a lost answer: the server checks the stored object and
    answers as the callback would have (HTTP 200, accepted or refused); 409 object_missing
    when nothing is stored yet (nothing changes)."""

    authentication_classes = [StatelessJWTAuthentication]
    permission_classes = [IsActiveAccount]
    throttle_classes = [ConfirmThrottle]

    @extend_schema(request=None, responses={200: CallbackAnswerSerializer})
    def post(self, request: Request, ticket_id: uuid.UUID) -> Response:
        try:
            answer = confirmation.ticket_confirm(user=request.user, ticket_id=ticket_id)
        except AppError as error:
            metrics.confirmation_observe(outcome="error", reason=error.code)
            raise
        metrics.confirmation_observe(**_outcome(answer))
        return Response(answer.body)


class UploadPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class UploadListApi(APIView):
    authentication_classes = [StatelessJWTAuthentication]
    permission_classes = [IsActiveAccount]

    @extend_schema(
        operation_id="uploads_list",
        parameters=[UploadListFilterSerializer],
        responses=UploadPageOutputSerializer,
    )
    def get(self, request: Request) -> Response:
        # A plain dict, not the QueryDict: DRF reads "?created_before=" from a QueryDict as
        # absent, and an empty filter is refused (400) like any invalid one.
        filters = {}
        if request.query_params:  # the first page usually has none: nothing to validate
            serializer = UploadListFilterSerializer(data=request.query_params.dict())
            serializer.is_valid(raise_exception=True)
            filters = serializer.validated_data
        uploads = selectors.upload_list(user=request.user, **filters)
        paginator = UploadPagination()
        page = paginator.paginate_queryset(uploads, request, view=self)
        variants = selectors.upload_variants(uploads=page)
        for upload in page:
            upload.variants = variants[upload.pk]
        return paginator.get_paginated_response(upload_rows(page))


class UploadDetailApi(APIView):
    authentication_classes = [StatelessJWTAuthentication]
    permission_classes = [IsActiveAccount]

    @extend_schema(responses=UploadDetailOutputSerializer)
    def get(self, request: Request, upload_id: int) -> Response:
        upload = selectors.upload_get(user=request.user, upload_id=upload_id)
        if upload is None:
            raise NotFound("No such upload.")
        signed = oss.oss_sign_download_url(key=upload.key, filename=upload.filename)
        upload.download_url = signed.url
        upload.download_expires_at = signed.expires_at
        upload.variants = selectors.upload_variants(uploads=[upload])[upload.pk]
        return Response(UploadDetailOutputSerializer(upload).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, upload_id: int) -> Response:
        services.upload_delete(user=request.user, upload_id=upload_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UsageApi(APIView):
    authentication_classes = [StatelessJWTAuthentication]
    permission_classes = [IsActiveAccount]

    @extend_schema(responses=UsageOutputSerializer)
    def get(self, request: Request) -> Response:
        usage = selectors.usage_get(user=request.user)
        max_bytes, max_objects = selectors.usage_limits(usage=usage)
        body = {
            "bytes_used": usage.bytes_used,
            "objects_used": usage.objects_used,
            "bytes_reserved": usage.bytes_reserved,
            "objects_reserved": usage.objects_reserved,
            "max_bytes": max_bytes,
            "max_objects": max_objects,
        }
        return Response(UsageOutputSerializer(body).data)


def _outcome(answer: services.CallbackAnswer) -> dict[str, str]:
    """The metrics labels of an answer: accepted, or refused with its reason (a Reason code)."""
    if answer.accepted:
        return {"outcome": "accepted", "reason": "none"}
    return {"outcome": "refused", "reason": answer.body["error"]["code"]}


@csrf_exempt
def oss_callback(request: HttpRequest) -> HttpResponse:
    """POST /api/oss/callback/: called by OSS after an upload with the ticket's callback;
    authenticated only by OSS's RSA signature. Verified callbacks always get HTTP 200 with JSON,
    accepted or refused, because OSS relays only a 200 answer to the app (anything else becomes
    203 CallbackFailed):

        accepted: {"ok": true, "upload": {"id", "key", "size", "content_type", ...}}
        refused:  {"ok": false, "error": {"code", "message"}, "key", "object_removed"}

    Unverifiable requests (forgeries) get 400/403 with the error shape and change nothing.

    A plain Django view, not DRF: nobody authenticates, negotiates or browses here, and DRF's
    request and response machinery was a third of this endpoint's own CPU. Only OSS calls it,
    so it is documented in docs/, not in the apps' OpenAPI schema."""
    started = time.perf_counter()
    # An exception leaving the view (Redis down) is answered 503 by ServiceUnavailableMiddleware.
    labels = {"outcome": "unavailable", "reason": "exception"}
    try:
        response, labels = _oss_callback(request)
    finally:
        metrics.callback_observe(seconds=time.perf_counter() - started, **labels)
    return response


def _oss_callback(request: HttpRequest) -> tuple[HttpResponse, dict[str, str]]:
    """The answer and its metrics labels (outcome, reason)."""
    if request.method != "POST":
        response = error_response(MethodNotAllowed(f'Method "{request.method}" not allowed.'))
        response["Allow"] = "POST"
        return response, {"outcome": "rejected", "reason": "method_not_allowed"}
    body = request.body  # the exact bytes and query string OSS signed
    try:
        callback_verify(
            authorization=request.headers.get("authorization", ""),
            pub_key_url_b64=request.headers.get("x-oss-pub-key-url", ""),
            path=request.path,
            query_string=request.META.get("QUERY_STRING", ""),
            body=body,
        )
        answer = services.callback_handle(
            body=body,
            content_type=request.headers.get("content-type", ""),
            bucket_header=request.headers.get("x-oss-bucket", ""),
        )
    except AppError as error:
        outcome = "unavailable" if error.status >= 500 else "rejected"
        return error_response(error), {"outcome": outcome, "reason": error.code}
    except (OperationalError, InterfaceError):
        # OSS relays only a 200, so the app sees 203 and confirms later; nothing was decided.
        error = DatabaseUnavailable()
        return error_response(error), {"outcome": "unavailable", "reason": error.code}
    return JsonResponse(answer.body), _outcome(answer)
