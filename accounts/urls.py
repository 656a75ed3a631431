from django.urls import path

from accounts import apis

urlpatterns = [
    path("login/", apis.LoginApi.as_view(), name="auth-login"),
    path("refresh/", apis.RefreshApi.as_view(), name="auth-refresh"),
    path("logout/", apis.LogoutApi.as_view(), name="auth-logout"),
    path("me/", apis.MeApi.as_view(), name="auth-me"),
    path("register/", apis.RegisterApi.as_view(), name="auth-register"),
]
