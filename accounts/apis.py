"""End-user authentication: JWT access + refresh tokens (simplejwt), rotation and blacklisting."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import serializers as s
from accounts.services import user_register
from accounts.throttles import LoginIPThrottle, LoginUsernameThrottle, RegisterThrottle
from appserver.errors import NotAuthenticated, NotFound


def _token_pair(user) -> dict[str, str]:
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


class LoginApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginIPThrottle, LoginUsernameThrottle]

    @extend_schema(request=s.LoginInputSerializer, responses=s.TokenPairSerializer)
    def post(self, request: Request) -> Response:
        data = s.LoginInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None:
            raise NotAuthenticated("Wrong username or password.", code="invalid_credentials")
        return Response(_token_pair(user))


class RefreshApi(APIView):
    """Rotates: the refresh token sent is blacklisted and a new pair comes back."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(request=s.RefreshInputSerializer, responses=s.TokenPairSerializer)
    def post(self, request: Request) -> Response:
        serializer = TokenRefreshSerializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except TokenError as exc:
            raise NotAuthenticated(
                "The refresh token is invalid, expired or already used. Log in again.",
                code="token_not_valid",
            ) from exc
        return Response(serializer.validated_data)


class LogoutApi(APIView):
    """Blacklists the refresh token. Holding it is the proof, so an expired access token does
    not stop a user from logging out."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(request=s.RefreshInputSerializer, responses={204: None})
    def post(self, request: Request) -> Response:
        data = s.RefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            RefreshToken(data.validated_data["refresh"]).blacklist()
        except TokenError as exc:
            raise NotAuthenticated(
                "The refresh token is invalid, expired or already used.", code="token_not_valid"
            ) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    @extend_schema(responses=s.UserOutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(s.UserOutputSerializer(request.user).data)


class RegisterApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [RegisterThrottle]

    @extend_schema(request=s.RegisterInputSerializer, responses={201: s.RegisterOutputSerializer})
    def post(self, request: Request) -> Response:
        if not settings.REGISTRATION_ENABLED:
            raise NotFound(
                "Self-registration is disabled on this server.", code="registration_disabled"
            )
        data = s.RegisterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_register(**data.validated_data)
        body = {"user": s.UserOutputSerializer(user).data, **_token_pair(user)}
        return Response(body, status=status.HTTP_201_CREATED)
