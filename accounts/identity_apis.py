"""Signing in the way apps do: an OpenID Connect ID token, or as a guest."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.apis import _client
from accounts.identities import (
    guest_create,
    guest_set_password,
    identity_link,
    identity_sign_in,
    identity_unlink,
)
from accounts.models import ExternalIdentity
from accounts.oidc import oidc_verify
from accounts.permissions import IsActiveAccount
from accounts.serializers import (
    IdentityOutputSerializer,
    OidcInputSerializer,
    RegisterInputSerializer,
    RegisterOutputSerializer,
    SignInOutputSerializer,
    UserOutputSerializer,
)
from accounts.services import session_start
from accounts.throttles import GuestThrottle, OidcThrottle
from appserver.errors import NotFound


def _verified(request: Request):
    data = OidcInputSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    return oidc_verify(
        provider_name=data.validated_data["provider"],
        id_token=data.validated_data["id_token"],
        nonce=data.validated_data.get("nonce"),
    )


class OidcExchangeApi(APIView):
    """An ID token from a configured provider in, this server's access/refresh pair out."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [OidcThrottle]

    @extend_schema(request=OidcInputSerializer, responses=SignInOutputSerializer)
    def post(self, request: Request) -> Response:
        identity = _verified(request)
        user, created = identity_sign_in(identity=identity)
        body = {
            "user": UserOutputSerializer(user).data,
            "created": created,
            **session_start(user=user, **_client(request)),
        }
        return Response(body)


class OidcLinkApi(APIView):
    permission_classes = [IsActiveAccount]
    throttle_classes = [OidcThrottle]

    @extend_schema(request=OidcInputSerializer, responses={201: IdentityOutputSerializer})
    def post(self, request: Request) -> Response:
        linked = identity_link(user=request.user, identity=_verified(request))
        return Response(IdentityOutputSerializer(linked).data, status=status.HTTP_201_CREATED)


class IdentityListApi(APIView):
    @extend_schema(responses=IdentityOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        identities = ExternalIdentity.objects.filter(user=request.user).order_by("pk")
        return Response(IdentityOutputSerializer(identities, many=True).data)


class IdentityDetailApi(APIView):
    permission_classes = [IsActiveAccount]

    @extend_schema(responses={204: None})
    def delete(self, request: Request, identity_id: int) -> Response:
        identity_unlink(user=request.user, identity_id=identity_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class GuestApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [GuestThrottle]
    error_responses = {404: "guests_disabled: guest accounts are off on this server."}

    @extend_schema(request=None, responses={201: RegisterOutputSerializer})
    def post(self, request: Request) -> Response:
        if not settings.GUEST_ENABLED:
            raise NotFound("Guest accounts are disabled on this server.", code="guests_disabled")
        user = guest_create()
        body = {
            "user": UserOutputSerializer(user).data,
            **session_start(user=user, **_client(request)),
        }
        return Response(body, status=status.HTTP_201_CREATED)


class GuestUpgradeApi(APIView):
    """A guest keeps its account, prefix and uploads, and gains a username and password."""

    permission_classes = [IsActiveAccount]
    error_responses = {409: "not_a_guest, or username_taken."}

    @extend_schema(request=RegisterInputSerializer, responses=UserOutputSerializer)
    def post(self, request: Request) -> Response:
        data = RegisterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = guest_set_password(user=request.user, **data.validated_data)
        return Response(UserOutputSerializer(user).data)
