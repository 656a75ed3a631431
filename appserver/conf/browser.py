"""The browser surface: the Content-Security-Policy of every response (django-csp) and which
other origins may call the JSON API (django-cors-headers)."""

from __future__ import annotations

from csp.constants import NONCE, NONE, SELF

from appserver.conf.environment import env

# --- Browser surface: Content-Security-Policy (django-csp) and CORS (django-cors-headers) --------
# One policy for every response: only this origin's scripts, styles and images, plus inline
# blocks that carry the response's nonce (the Swagger UI page, the reports dashboard). The
# upload page adds the OSS endpoint it uploads to and shows thumbnails from
# (webclient/views.py). No framing at all (X_FRAME_OPTIONS says the same to old browsers).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# CORS only for what a web app on another origin calls with a JWT (log in, credentials,
# tickets, uploads): never the OSS callback (server to server), the admin or the reports.
# No origin is allowed unless listed; no cookies cross (the API authenticates by header).
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/(auth|sts|uploads)/"
CORS_ALLOW_CREDENTIALS = False
CORS_EXPOSE_HEADERS = ["Retry-After", "X-Request-ID"]
CORS_PREFLIGHT_MAX_AGE = 3600
