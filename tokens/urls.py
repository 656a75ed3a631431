from django.urls import path

from tokens import apis

urlpatterns = [
    path("credentials/", apis.CredentialsApi.as_view(), name="sts-credentials"),
]
