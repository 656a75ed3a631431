"""End-user authentication: JWT access + refresh tokens (simplejwt) in login sessions whose
refresh tokens rotate once each (accounts.models.LoginSession)."""

from __future__ import annotations

import ipaddress
import uuid

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from accounts.permissions import IsAccountHolder
from accounts.selectors import session_list
from accounts.serializers import (
    LoginInputSerializer,
    RefreshInputSerializer,
    RegisterInputSerializer,
    RegisterOutputSerializer,
    SessionOutputSerializer,
    SessionsRevokedSerializer,
    TokenPairSerializer,
    UserOutputSerializer,
    user_output,
)
from accounts.services import (
    session_logout,
    session_refresh,
    session_revoke,
    session_revoke_others,
    session_start,
    user_register,
)
from accounts.throttles import LoginIPThrottle, RegisterThrottle
from appserver.errors import AccountSuspended, NotAuthenticated, NotFound


def _client(request: Request) -> dict:
    """Who is asking, as recorded on the session (the same client address the throttles use)."""
    ident = BaseThrottle().get_ident(request)
    try:
        ip_address = str(ipaddress.ip_address(ident.strip()))
    except (AttributeError, ValueError):
        ip_address = None
    return {"user_agent": request.META.get("HTTP_USER_AGENT", ""), "ip_address": ip_address}


def _current_session(request: Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(request.auth["sid"]))
    except (KeyError, TypeError, ValueError):
        return None


class LoginApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginIPThrottle]
    error_responses = {
        401: "invalid_credentials: wrong username or password.",
        403: "account_suspended.",
        429: "throttled, or locked out after repeated failures for this username and address.",
    }

    @extend_schema(request=LoginInputSerializer, responses=TokenPairSerializer)
    def post(self, request: Request) -> Response:
        data = LoginInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # Django's own request: django-axes records failures and locks out on it, and its
        # middleware turns a lockout into the 429 (accounts/lockout.py).
        user = authenticate(request._request, **data.validated_data)
        if user is None:
            raise NotAuthenticated("Wrong username or password.", code="invalid_credentials")
        if user.is_suspended:
            raise AccountSuspended()
        # Resets the lockout's failure count for this (username, address) and sets last_login.
        user_logged_in.send(sender=type(user), request=request._request, user=user)
        return Response(session_start(user=user, **_client(request)))


class RefreshApi(APIView):
    """Rotates: the refresh token sent is used up and a new pair comes back. Each refresh token
    works once; sending one again ends its session."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    error_responses = {401: "token_not_valid: expired, used up, revoked or of no active user."}

    @extend_schema(request=RefreshInputSerializer, responses=TokenPairSerializer)
    def post(self, request: Request) -> Response:
        data = RefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pair = session_refresh(refresh=data.validated_data["refresh"], **_client(request))
        return Response(pair)


class LogoutApi(APIView):
    """Ends the refresh token's session. Holding it is the proof, so an expired access token
    does not stop a user from logging out."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    error_responses = {401: "token_not_valid: expired, used up, revoked or of no active user."}

    @extend_schema(request=RefreshInputSerializer, responses={204: None})
    def post(self, request: Request) -> Response:
        data = RefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session_logout(refresh=data.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    permission_classes = [IsAccountHolder]

    @extend_schema(responses=UserOutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(user_output(request.user))


class RegisterApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [RegisterThrottle]
    error_responses = {
        404: "registration_disabled: self-registration is off on this server.",
        409: "username_taken (also by a look-alike of an existing username).",
    }

    @extend_schema(request=RegisterInputSerializer, responses={201: RegisterOutputSerializer})
    def post(self, request: Request) -> Response:
        if not settings.REGISTRATION_ENABLED:
            raise NotFound(
                "Self-registration is disabled on this server.", code="registration_disabled"
            )
        data = RegisterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_register(**data.validated_data)
        body = {
            "user": UserOutputSerializer(user).data,
            **session_start(user=user, **_client(request)),
        }
        return Response(body, status=status.HTTP_201_CREATED)


class SessionListApi(APIView):
    """The user's active logins (one per device), newest use first; DELETE ends all but the
    caller's own."""

    permission_classes = [IsAccountHolder]

    @extend_schema(responses=SessionOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        current = _current_session(request)
        sessions = session_list(user=request.user)
        return Response(
            SessionOutputSerializer(sessions, many=True, context={"current": current}).data
        )

    @extend_schema(
        operation_id="auth_sessions_revoke_others", responses={200: SessionsRevokedSerializer}
    )
    def delete(self, request: Request) -> Response:
        ended = session_revoke_others(user=request.user, keep=_current_session(request))
        return Response({"revoked": ended})


class SessionDetailApi(APIView):
    permission_classes = [IsAccountHolder]

    @extend_schema(operation_id="auth_session_revoke", responses={204: None})
    def delete(self, request: Request, session_id: uuid.UUID) -> Response:
        if not session_revoke(user=request.user, session_id=session_id):
            raise NotFound("You have no active session with that id.", code="session_not_found")
        return Response(status=status.HTTP_204_NO_CONTENT)
