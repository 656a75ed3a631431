from django.urls import path

from accounts import apis, identity_apis

urlpatterns = [
    path("login/", apis.LoginApi.as_view(), name="auth-login"),
    path("refresh/", apis.RefreshApi.as_view(), name="auth-refresh"),
    path("logout/", apis.LogoutApi.as_view(), name="auth-logout"),
    path("me/", apis.MeApi.as_view(), name="auth-me"),
    path("register/", apis.RegisterApi.as_view(), name="auth-register"),
    path("sessions/", apis.SessionListApi.as_view(), name="auth-sessions"),
    path(
        "sessions/<uuid:session_id>/", apis.SessionDetailApi.as_view(), name="auth-session-detail"
    ),
    path("oidc/", identity_apis.OidcExchangeApi.as_view(), name="auth-oidc"),
    path("oidc/link/", identity_apis.OidcLinkApi.as_view(), name="auth-oidc-link"),
    path("identities/", identity_apis.IdentityListApi.as_view(), name="auth-identities"),
    path(
        "identities/<int:identity_id>/",
        identity_apis.IdentityDetailApi.as_view(),
        name="auth-identity",
    ),
    path("guest/", identity_apis.GuestApi.as_view(), name="auth-guest"),
    path("guest/upgrade/", identity_apis.GuestUpgradeApi.as_view(), name="auth-guest-upgrade"),
]
