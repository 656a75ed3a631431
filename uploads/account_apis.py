"""Leaving with your data: DELETE /api/auth/me/ and GET /api/auth/me/export/.

They sit under /api/auth/ for the apps, but live in uploads: erasing and exporting an account
is mostly its objects and upload rows (accounts knows nothing of the apps built on it)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import apis as accounts_apis
from accounts.serializers import (
    EraseInputSerializer,
    ErasureOutputSerializer,
)
from uploads.erasure import account_erase_checked, account_export


class MeApi(accounts_apis.MeApi):
    """GET as in accounts; DELETE erases the account."""

    def get_permissions(self):
        # A suspended user may still leave (their data goes; nothing new is handed out).
        if self.request.method == "DELETE":
            return [IsAuthenticated()]
        return super().get_permissions()

    @extend_schema(
        operation_id="auth_me_erase",
        request=EraseInputSerializer,
        responses={200: ErasureOutputSerializer, 202: ErasureOutputSerializer},
    )
    def delete(self, request: Request) -> Response:
        """Erase the account: needs the password, or a sign-in within the last few minutes."""
        data = EraseInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        erasure = account_erase_checked(
            user=request.user,
            password=data.validated_data.get("password") or "",
            session_id=request.auth.get("sid") if request.auth is not None else None,
        )
        done = erasure.state == erasure.State.DONE
        return Response(
            ErasureOutputSerializer(erasure).data,
            status=status.HTTP_200_OK if done else status.HTTP_202_ACCEPTED,
        )


class ExportApi(APIView):
    @extend_schema(operation_id="auth_me_export", responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(account_export(user=request.user))
