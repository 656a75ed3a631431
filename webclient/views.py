"""The browser upload page: a static shell; everything else happens in the browser via the API.

The page holds no session and renders no user data: it logs in against /api/auth/login/, keeps
the JWT in sessionStorage and uploads straight to OSS with ali-oss, exactly as a mobile app does.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from uploads.oss import oss_browser_origins


@require_GET
def upload_page(request: HttpRequest) -> HttpResponse:
    context = {
        # ali-oss puts no bucket in the URL for an IP endpoint unless told to use path style,
        # and a docker-compose service name needs path style too (see docs/mobile-integration.md).
        "oss_path_style": settings.OSS_PATH_STYLE,
        "oss_signature_version": settings.OSS_SIGNATURE_VERSION,
        "upload_max_size": settings.UPLOAD_MAX_SIZE,
        "registration_enabled": settings.REGISTRATION_ENABLED,
        "guest_enabled": settings.GUEST_ENABLED,
    }
    response = render(request, "webclient/upload.html", context)
    # django-csp reads this per-response addition (what its csp_update decorator sets): the page
    # talks to the bucket, path-style or as <bucket>.<endpoint host>, from the settings now.
    origins = oss_browser_origins()
    response._csp_update = {"connect-src": origins, "img-src": origins}
    return response
