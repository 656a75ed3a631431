"""Settings, all from the environment (django-environ).

With nothing set, the server runs on the embedded default: SQLite, a local-memory cache, and the
local STS/OSS emulator (`python -m emulator`) with its development keys. `APP_ENV=production`
switches every default to the safe side and refuses to start without the secrets it needs.
Every setting is listed, with its variable and default, in docs/configuration.md.

The sections that stand on their own (the databases and cache, the browser surface, Alibaba
Cloud, observability, uploads) are modules of appserver/conf/, imported here by name where
their section is: this module names every setting there is, and the environment is read in the
order of the sections.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured

from appserver.conf.environment import APP_ENV, BASE_DIR, PRODUCTION, env, required

# --- Core -------------------------------------------------------------------------------------
SECRET_KEY = required("SECRET_KEY", local_default="local-development-only-" + "x" * 40)
DEBUG = env.bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = (
    required("ALLOWED_HOSTS", cast=list)
    if PRODUCTION
    else env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "accounts.apps.AdminConfig",  # Django's admin, with OTP for staff (accounts/admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / ReDoc assets served locally: no CDN
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",
    "corsheaders",
    "events",
    "accounts",
    "policies",
    "tokens",
    "uploads",
    "reports",
    "webclient",
]

# The browser-only middleware (appserver.middleware: the stock classes, skipped on the JSON API
# under API_PATH_PREFIXES) run for the admin, the upload page, the reports and the docs.
MIDDLEWARE = [
    # First: its request latency covers every other middleware.
    "appserver.metrics.middleware.RequestMetricsMiddleware",
    "appserver.middleware.RequestIdMiddleware",
    "appserver.middleware.ServiceUnavailableMiddleware",
    # Before CommonMiddleware, as django-cors-headers requires, so preflights are answered.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "appserver.middleware.CSPMiddleware",
    "appserver.middleware.WhiteNoiseMiddleware",
    "appserver.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Stock: DRF's views are csrf_exempt already, and `check --deploy` looks for it by name.
    "django.middleware.csrf.CsrfViewMiddleware",
    "appserver.middleware.AuthenticationMiddleware",
    "appserver.middleware.OTPMiddleware",
    "appserver.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a login refused by django-axes into the lockout response.
    "axes.middleware.AxesMiddleware",
]
# Paths of the JSON API, authenticated by JWT only (or by OSS's signature, the callback): no
# session, CSRF, messages, CSP or static files there. Never the admin, the pages, the reports or
# the docs. Not a setting from the environment: it follows the URLconf.
API_PATH_PREFIXES = ("/api/auth/", "/api/sts/", "/api/uploads/", "/api/oss/")

ROOT_URLCONF = "appserver.urls"
WSGI_APPLICATION = "appserver.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database and cache (appserver/conf/database.py) ------------------------------------------
from appserver.conf.database import (
    CACHE_KEY_PREFIX,
    CACHES,
    DATABASE_ROUTERS,
    DATABASE_URL,
    DATABASES,
    REDIS_URL,
    REPORTS_DATABASE,
    REPORTS_DATABASE_URL,
    REPORTS_MAX_STALENESS_SECONDS,
)

# --- Passwords, i18n, static ------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = not PRODUCTION  # serve app static files without collectstatic locally
if not PRODUCTION:
    STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Security (production) --------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
# Load balancer and container health checks speak plain HTTP to the container.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Browser surface: CSP and CORS (appserver/conf/browser.py) --------------------------------
from appserver.conf.browser import (
    CONTENT_SECURITY_POLICY,
    CORS_ALLOW_CREDENTIALS,
    CORS_ALLOWED_ORIGINS,
    CORS_EXPOSE_HEADERS,
    CORS_PREFLIGHT_MAX_AGE,
    CORS_URLS_REGEX,
)

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "appserver.schema.AutoSchema",
    "EXCEPTION_HANDLER": "appserver.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "login_ip": env.str("THROTTLE_LOGIN_IP", default="30/min"),
        "register": env.str("THROTTLE_REGISTER", default="10/hour"),
        "credentials": env.str("THROTTLE_CREDENTIALS", default="120/min"),
        "tickets": env.str("THROTTLE_TICKETS", default="120/min"),
        "confirmations": env.str("THROTTLE_CONFIRMATIONS", default="120/min"),
        "guest": env.str("THROTTLE_GUEST", default="10/hour"),
        "oidc": env.str("THROTTLE_OIDC", default="60/min"),
    },
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_ACCESS_SECONDS", default=900)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=30)),
    # Rotation happens in accounts.services.session_refresh (one use per refresh token, reuse
    # ends the session), not in simplejwt's serializers.
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default=SECRET_KEY),
    "USER_ID_FIELD": "id",
}

# The hot endpoints (credentials, tickets, uploads) trust an access token's claims without reading
# the user row while Redis holds the user's token epoch (accounts/token_state.py). Needs the
# shared cache (REDIS_URL): with the local-memory cache every request reads the database.
AUTH_STATELESS = env.bool("AUTH_STATELESS", default=True)

SPECTACULAR_SETTINGS = {
    "TITLE": "OSS direct-upload app server",
    "DESCRIPTION": (
        "Login, per-user STS credentials for Alibaba Cloud OSS, upload tickets and verified "
        "upload callbacks."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "appserver.schema.postprocess_request_strings",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- End users --------------------------------------------------------------------------------
REGISTRATION_ENABLED = env.bool("REGISTRATION_ENABLED", default=not PRODUCTION)

# --- Login lockout and admin two-factor (accounts/lockout.py, accounts/admin_site.py) ----------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out (username, address) first
    "django.contrib.auth.backends.ModelBackend",
]
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "accounts.lockout.login_username"
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # failures are kept; successful logins are the sessions' record
AXES_VERBOSE = False  # lockouts are still logged, without a banner on every start
# Staff must add a TOTP code to their password in the admin (django-otp).
ADMIN_REQUIRE_OTP = env.bool("ADMIN_REQUIRE_OTP", default=PRODUCTION)
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="OSS app server admin")

# OpenID Connect providers whose ID tokens POST /api/auth/oidc/ exchanges (accounts/oidc.py):
# a JSON list of {"name", "issuer", "audiences": [...], "jwks_uri" (optional: else discovery)}.
OIDC_PROVIDERS = env.json("OIDC_PROVIDERS", default=[])
# Asymmetric algorithms only: "none" and HS* (a shared secret) are refused whatever this says.
OIDC_ALLOWED_ALGORITHMS = env.list(
    "OIDC_ALLOWED_ALGORITHMS",
    default=["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"],
)
OIDC_HTTP_TIMEOUT_SECONDS = env.float("OIDC_HTTP_TIMEOUT_SECONDS", default=3.0)
OIDC_MAX_DOCUMENT_BYTES = env.int("OIDC_MAX_DOCUMENT_BYTES", default=256 * 1024)
OIDC_JWKS_CACHE_SECONDS = env.int("OIDC_JWKS_CACHE_SECONDS", default=3600)
OIDC_JWKS_MIN_REFRESH_SECONDS = env.int("OIDC_JWKS_MIN_REFRESH_SECONDS", default=60)
OIDC_LEEWAY_SECONDS = env.int("OIDC_LEEWAY_SECONDS", default=60)

# Guests (POST /api/auth/guest/): try before signing up, with small quotas, removed after a while.
GUEST_ENABLED = env.bool("GUEST_ENABLED", default=False)
GUEST_QUOTA_BYTES = env.int("GUEST_QUOTA_BYTES", default=50 * 1024**2)
GUEST_QUOTA_OBJECTS = env.int("GUEST_QUOTA_OBJECTS", default=20)
GUEST_TTL_DAYS = env.int("GUEST_TTL_DAYS", default=7)

# DELETE /api/auth/me/ without a password needs a login session started at most this long ago
# (refreshing keeps a session's start).
ACCOUNT_ERASE_FRESH_SECONDS = env.int("ACCOUNT_ERASE_FRESH_SECONDS", default=300)

# --- Alibaba Cloud: the RAM user, STS, OSS, upload callbacks (appserver/conf/alibaba.py) ------
from appserver.conf.alibaba import (
    ALIBABA_ACCESS_KEY_ID,
    ALIBABA_ACCESS_KEY_SECRET,
    APP_PORT,
    CREDENTIALS_ENCRYPTION_KEY,
    CREDENTIALS_LOCAL_SECONDS,
    CREDENTIALS_SAFETY_WINDOW_SECONDS,
    CREDENTIALS_SERVED_FLUSH_SECONDS,
    EMULATOR_PORT,
    OSS_BUCKET,
    OSS_CALLBACK_KEY_URL_PREFIXES,
    OSS_CALLBACK_URL,
    OSS_ENDPOINT,
    OSS_PATH_STYLE,
    OSS_PUBLIC_ENDPOINT,
    OSS_REGION,
    OSS_SIGNATURE_VERSION,
    POLICY_TEMPLATES_DIR,
    STORAGE_PREFIX_TEMPLATE,
    STS_DURATION_SECONDS,
    STS_ENDPOINT,
    STS_ROLE_ARN,
    STS_TIMEOUT_SECONDS,
)

# --- Metrics and logging (appserver/conf/observability.py) ------------------------------------
from appserver.conf.observability import (
    LOG_FORMAT,
    LOG_LEVEL,
    LOGGING,
    METRICS_ALLOWED_IPS,
    METRICS_ALLOWED_NETWORKS,
    METRICS_TOKEN,
)

# --- Upload limits, quotas and callback trust (appserver/conf/uploads.py) ---------------------
from appserver.conf.uploads import (
    DOWNLOAD_URL_TTL_SECONDS,
    IMAGE_VARIANT_ENDPOINT,
    IMAGE_VARIANT_URL_TTL_SECONDS,
    IMAGE_VARIANTS,
    OSS_CALLBACK_KEY_FETCH_TIMEOUT_SECONDS,
    OSS_CALLBACK_PINNED_KEYS,
    OSS_TIMEOUT_SECONDS,
    UPLOAD_ALLOWED_CONTENT_TYPES,
    UPLOAD_CALLBACK_HEAD_CHECK,
    UPLOAD_CALLBACK_HMAC_KEY,
    UPLOAD_MAX_SIZE,
    UPLOAD_QUOTA_BYTES,
    UPLOAD_QUOTA_OBJECTS,
    UPLOAD_TICKET_TTL_SECONDS,
)

# --- Reports and reconciliation (reports/) ----------------------------------------------------
# What `manage.py reconcile --apply` does with an object inside a known user's prefix that has
# no upload row: "adopt" (record it from a HEAD, counting against the user's usage) or "delete".
# Objects under the managed prefix that belong to no user are deleted only with "delete".
RECONCILE_STRAY_OBJECTS = env.str("RECONCILE_STRAY_OBJECTS", default="adopt")
if RECONCILE_STRAY_OBJECTS not in {"adopt", "delete"}:
    raise ImproperlyConfigured("RECONCILE_STRAY_OBJECTS must be 'adopt' or 'delete'.")
# Objects this recent (and tickets expired this recently) are left alone: their callback may
# still be on its way.
RECONCILE_GRACE_SECONDS = env.int("RECONCILE_GRACE_SECONDS", default=900)
RECONCILE_PAGE_SIZE = env.int("RECONCILE_PAGE_SIZE", default=1000)  # keys per ListObjects call
# A run still "running" with no progress saved for this long is shown as stale (killed).
RECONCILE_STALE_SECONDS = env.int("RECONCILE_STALE_SECONDS", default=900)
# `manage.py sweep_uploads` leaves objects this recent to their callback (OSS waits 5 s for it)
# and settles them on a later run.
SWEEP_GRACE_SECONDS = env.int("SWEEP_GRACE_SECONDS", default=30)
# The reports' covering index (uploads migration 0003) is PostgreSQL's; on the embedded SQLite it
# is a plain index on created_at, which is all a local demo needs.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    SILENCED_SYSTEM_CHECKS = [*globals().get("SILENCED_SYSTEM_CHECKS", []), "models.W040"]

# --- Events and webhooks (events/, docs/events.md) -------------------------------------------
# Delivery is retried (exponential backoff with jitter) until an event is this old, then parked.
EVENTS_MAX_AGE_HOURS = env.float("EVENTS_MAX_AGE_HOURS", default=72)
EVENTS_RETRY_BASE_SECONDS = env.float("EVENTS_RETRY_BASE_SECONDS", default=5)
EVENTS_RETRY_MAX_SECONDS = env.float("EVENTS_RETRY_MAX_SECONDS", default=3600)
EVENTS_CONNECT_TIMEOUT_SECONDS = env.float("EVENTS_CONNECT_TIMEOUT_SECONDS", default=3)
EVENTS_READ_TIMEOUT_SECONDS = env.float("EVENTS_READ_TIMEOUT_SECONDS", default=5)
# Lines (endpoint, user) one worker posts at the same time; each line stays in order.
EVENTS_DELIVERY_THREADS = env.int("EVENTS_DELIVERY_THREADS", default=8)
# How long an idle worker sleeps between looks at the outbox (the latency floor).
EVENTS_POLL_SECONDS = env.float("EVENTS_POLL_SECONDS", default=0.05)
# Delivered events older than this are deleted by the worker.
EVENTS_RETENTION_DAYS = env.int("EVENTS_RETENTION_DAYS", default=30)
# Webhook hosts allowed (exact names); empty: any host that passes the address checks.
EVENTS_ALLOWED_HOSTS = env.list("EVENTS_ALLOWED_HOSTS", default=[])
# Loopback and private addresses (in-VPC receivers, local tests). Link-local and metadata
# addresses (169.254.0.0/16, 100.100.100.200) are refused whatever this says.
EVENTS_ALLOW_PRIVATE_ADDRESSES = env.bool("EVENTS_ALLOW_PRIVATE_ADDRESSES", default=not PRODUCTION)
# Fernet key(s), comma-separated (first encrypts), for the stored webhook secrets; empty derives
# one from SECRET_KEY (then changing SECRET_KEY means setting every endpoint's secret again).
EVENTS_ENCRYPTION_KEY = env.str("EVENTS_ENCRYPTION_KEY", default="")
# CA certificates (PEM file) that https receivers' certificates are verified with; empty: the
# public CAs (certifi). For receivers with certificates of an internal CA.
EVENTS_CA_BUNDLE = env.str("EVENTS_CA_BUNDLE", default="")
