"""The anchor of `make bench`: a minimal Django + DRF + simplejwt service, in one file.

What the project's hot endpoints are measured against, in the same run, on the same machine,
under the same gunicorn settings: no middleware, no app of its own, Django's stock user model,
its own database (ANCHOR_DATABASE_URL).

    GET /plain/      Django's JsonResponse: no DRF, no authentication.
    GET /stateless/  DRF APIView + simplejwt's JWTStatelessUserAuthentication (signature and
                     expiry only), answering a credentials-sized JSON body.
    GET /dbauth/     the same with simplejwt's JWTAuthentication (one user SELECT per request).
    /floor/...       each hot endpoint's guarantees at their least cost (floors.py).

bench/framework_bench.py runs it as `gunicorn anchor:application --pythonpath bench/anchor`;
`python bench/anchor/anchor.py tokens N` migrates, creates N users and prints an access token
for each, one per line.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import django
import environ
from django.conf import settings
from django.http import JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY="anchor-bench-only-" + "x" * 40,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "rest_framework",
    ],
    MIDDLEWARE=[],
    DATABASES={
        "default": {
            **environ.Env.db_url_config(os.environ["ANCHOR_DATABASE_URL"]),
            # The project's own default (DB_CONN_MAX_AGE=60): a connection per worker, kept.
            "CONN_MAX_AGE": 60,
        }
    },
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    },
    SIMPLE_JWT={"ACCESS_TOKEN_LIFETIME": timedelta(hours=2)},
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from floors import CredentialsFloor, TicketsFloor, UploadsFloor, floors_setup  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402
from rest_framework_simplejwt.authentication import (  # noqa: E402
    JWTAuthentication,
    JWTStatelessUserAuthentication,
)

# As large as the project's credentials answer (STS tokens are several hundred characters).
BODY = {
    "StatusCode": 200,
    "AccessKeyId": "STS.NUxxxxxxxxxxxxxxxxxxxxx",
    "AccessKeySecret": "x" * 44,
    "SecurityToken": "CAIS" + "x" * 600,
    "Expiration": "2026-01-01T00:00:00Z",
    "Bucket": "app-uploads",
    "Region": "cn-hangzhou",
    "Endpoint": "https://oss-cn-hangzhou.aliyuncs.com",
    "Prefix": "users/0123456789abcdef0123456789abcdef/",
    "Scope": "readwrite",
    "RefreshAfter": "2026-01-01T00:00:00Z",
    "ServerTime": "2026-01-01T00:00:00Z",
}


def plain(request):
    return JsonResponse(BODY)


class StatelessApi(APIView):
    authentication_classes = [JWTStatelessUserAuthentication]

    def get(self, request):
        return Response(BODY)


class DbAuthApi(APIView):
    authentication_classes = [JWTAuthentication]

    def get(self, request):
        return Response(BODY)


urlpatterns = [
    path("plain/", plain),
    path("stateless/", StatelessApi.as_view()),
    path("dbauth/", DbAuthApi.as_view()),
    path("floor/credentials/", CredentialsFloor.as_view()),
    path("floor/tickets/", TicketsFloor.as_view()),
    path("floor/uploads/", UploadsFloor.as_view()),
]

application = get_wsgi_application()


def _tokens(count: int) -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import AccessToken

    call_command("migrate", verbosity=0)
    User.objects.filter(username__startswith="anchor-").delete()
    users = [User.objects.create_user(f"anchor-{number}", password=None) for number in range(count)]
    floors_setup([user.pk for user in users], body=BODY)
    for user in users:
        print(AccessToken.for_user(user))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "tokens":
        _tokens(int(sys.argv[2]))
    else:
        raise SystemExit(__doc__)
