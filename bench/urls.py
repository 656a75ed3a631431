"""The app's URLs plus /bench/baseline/: same JWT authentication as the credentials endpoint,
answers a constant. What the credentials endpoint's cost is compared with."""

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from appserver.urls import urlpatterns as app_urlpatterns


class BaselineApi(APIView):
    """DRF defaults: simplejwt authentication (one user SELECT), IsAuthenticated."""

    def get(self, request: Request) -> Response:
        return Response({"StatusCode": 200})


urlpatterns = [
    *app_urlpatterns,
    path("bench/baseline/", BaselineApi.as_view(), name="bench-baseline"),
]
