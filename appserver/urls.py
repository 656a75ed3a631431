from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from appserver.health import healthz
from appserver.metrics.views import metrics
from uploads import account_apis
from uploads.apis import oss_callback

handler400 = "appserver.errors.handler400"
handler403 = "appserver.errors.handler403"
handler404 = "appserver.errors.handler404"
handler500 = "appserver.errors.handler500"

urlpatterns = [
    # People who open the server's address land on the upload page, not on a 404.
    path("", RedirectView.as_view(pattern_name="upload-page", permanent=False)),
    path("healthz", healthz, name="healthz"),
    # Prometheus' default path; who may read it: METRICS_TOKEN / METRICS_ALLOWED_IPS.
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # Before accounts' own me/: the same GET, plus DELETE (erasure, in uploads).
    path("api/auth/me/", account_apis.MeApi.as_view(), name="auth-me-erase"),
    path("api/auth/me/export/", account_apis.ExportApi.as_view(), name="auth-export"),
    path("api/auth/", include("accounts.urls")),
    path("api/uploads/", include("uploads.urls")),
    path("api/oss/callback/", oss_callback, name="oss-callback"),
    path("api/sts/", include("tokens.urls")),
    path("api/reports/", include("reports.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its script from a URL: no inline script for the CSP to allow.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    path("upload/", include("webclient.urls")),
]
