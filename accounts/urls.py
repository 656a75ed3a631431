from django.urls import path

from accounts import apis

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
]
