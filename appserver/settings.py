"""Settings, all from the environment (django-environ).

With nothing set, the server runs on the embedded default: SQLite, a local-memory cache, and the
local STS/OSS emulator (`python -m emulator`) with its development keys. `APP_ENV=production`
switches every default to the safe side and refuses to start without the secrets it needs.
Every setting is listed, with its variable and default, in docs/configuration.md.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class _Env(environ.Env):
    """django-environ, with a message that names the variable when a value does not parse
    (`STS_DURATION_SECONDS=1h` stops the start with that, not with int()'s traceback)."""

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ValueError:
            kind = {int: "a whole number", float: "a number"}.get(cast, f"a valid {cast}")
            raise ImproperlyConfigured(
                f"{var} must be {kind}, not {self.ENVIRON.get(var)!r} (see docs/configuration.md)."
            ) from None


env = _Env()
# A developer's own overrides; never committed (see .env.example).
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

APP_ENV = env.str("APP_ENV", default="local")
if APP_ENV not in {"local", "production"}:
    raise ImproperlyConfigured(f"APP_ENV must be 'local' or 'production', not {APP_ENV!r}.")
PRODUCTION = APP_ENV == "production"


def _required(name: str, cast=str, local_default=None):
    """A setting production must be given; locally it falls back to the embedded default."""
    if name in env.ENVIRON and env.ENVIRON[name] != "":
        return env.get_value(name, cast=cast)
    if PRODUCTION:
        raise ImproperlyConfigured(
            f"{name} is not set. APP_ENV=production needs it: set it in the environment "
            "(see .env.example and docs/configuration.md)."
        )
    return local_default


# --- Core -------------------------------------------------------------------------------------
SECRET_KEY = _required("SECRET_KEY", local_default="local-development-only-" + "x" * 40)
DEBUG = env.bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = (
    _required("ALLOWED_HOSTS", cast=list)
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

# --- Database and cache -----------------------------------------------------------------------
DATABASE_URL = _required(
    "DATABASE_URL", local_default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"
)
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The same backend, with a health check that polls the socket instead of a round trip,
    # and server-side binding for the hot statements that ask for it (appserver/db/base.py).
    DATABASES["default"]["ENGINE"] = "appserver.db"
    _prepare_threshold = env.str("DB_PREPARE_THRESHOLD", default="5").strip()
    if _prepare_threshold and not _prepare_threshold.isdigit():
        raise ImproperlyConfigured(
            "DB_PREPARE_THRESHOLD must be a whole number, or empty to never prepare statements."
        )
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        int(_prepare_threshold) if _prepare_threshold else None
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    # The embedded default takes concurrent writers (the upload page sends files in parallel):
    # a transaction takes the write lock when it begins, not when it first writes (two deferred
    # transactions upgrading their read locks deadlock, and SQLite fails one at once with
    # "database is locked" whatever the timeout); writers then wait their turn for up to
    # SQLITE_BUSY_TIMEOUT_SECONDS; WAL lets reads go on while one writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.float("SQLITE_BUSY_TIMEOUT_SECONDS", default=20.0),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
# Reports (the staff API under /api/reports/, the admin dashboard, `manage.py report`) read from
# this PostgreSQL streaming replica when it is set, so they never load the primary; writes never
# go there (reports/routing.py). Unset: they read the primary.
REPORTS_DATABASE_URL = env.str("REPORTS_DATABASE_URL", default="")
REPORTS_DATABASE: str | None = None  # the alias reports read from; None: the primary
DATABASE_ROUTERS = ["reports.routing.ReportsRouter"]
if REPORTS_DATABASE_URL:
    _replica = env.db_url_config(REPORTS_DATABASE_URL)
    if DATABASES["default"]["ENGINE"] != "appserver.db" or _replica["ENGINE"] != (
        "django.db.backends.postgresql"
    ):
        raise ImproperlyConfigured(
            "REPORTS_DATABASE_URL is a PostgreSQL replica of DATABASE_URL: both must be postgres://."
        )
    _replica.update(
        ENGINE="appserver.db.replica",  # read-only sessions, and nothing created in tests
        CONN_MAX_AGE=DATABASES["default"]["CONN_MAX_AGE"],
        CONN_HEALTH_CHECKS=True,
    )
    # A replica that does not answer fails the report in seconds (503), not a worker's timeout.
    _replica.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    _replica["OPTIONS"]["options"] = "-c default_transaction_read_only=on"
    DATABASES["reports"] = _replica
    REPORTS_DATABASE = "reports"
# A report answers 503 (Retry-After) rather than show figures older than this: the replica's
# replay lag, shown on the dashboard (reports/routing.py).
REPORTS_MAX_STALENESS_SECONDS = env.float("REPORTS_MAX_STALENESS_SECONDS", default=60.0)

REDIS_URL = _required("REDIS_URL", local_default="")
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default="appserver")
if REDIS_URL:
    CACHES = {
        "default": {
            # Django's backend, reusing its redis-py client (appserver/cache.py).
            "BACKEND": "appserver.cache.RedisCache",
            # Sentinel and cluster locations list several hosts with commas, which Django would
            # take for read replicas: one URL in a list (appserver/cache.py reads the schemes).
            "LOCATION": (
                [REDIS_URL]
                if REDIS_URL.split("://", 1)[0].endswith(("+sentinel", "+cluster"))
                else REDIS_URL
            ),
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "TIMEOUT": 300,
            # Bounded so a stalled Redis degrades requests instead of hanging workers.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "appserver",
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }

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

# --- Alibaba Cloud: the server's own RAM user -------------------------------------------------
# Used to call AssumeRole and for the server's own OSS work (removing refused objects,
# reconciliation, signed download URLs). Locally: what `python -m emulator` serves with no flags
# (its development root key pair, role, bucket and region; placeholders, not secrets). Production
# has no default for any of them.
ALIBABA_ACCESS_KEY_ID = _required("ALIBABA_ACCESS_KEY_ID", local_default="LTAIemulatorRootKey01")
ALIBABA_ACCESS_KEY_SECRET = _required(
    "ALIBABA_ACCESS_KEY_SECRET",
    local_default="emulator-root-secret-for-local-use-only",
)
# The embedded default's ports, the same variables `make run` reads (scripts/run_local.py), so
# `EMULATOR_PORT=9101 python manage.py reconcile` talks to `EMULATOR_PORT=9101 make run`'s emulator.
EMULATOR_PORT = env.int("EMULATOR_PORT", default=9100)
APP_PORT = env.int("APP_PORT", default=8000)
_EMULATOR_ENDPOINT = f"http://127.0.0.1:{EMULATOR_PORT}"

# --- STS (tokens/) ----------------------------------------------------------------------------
STS_ENDPOINT = _required("STS_ENDPOINT", local_default=_EMULATOR_ENDPOINT)
STS_ROLE_ARN = _required(
    "STS_ROLE_ARN", local_default="acs:ram::1000000000000001:role/app-uploader"
)
STS_DURATION_SECONDS = env.int("STS_DURATION_SECONDS", default=3600)
if STS_DURATION_SECONDS < 900:
    raise ImproperlyConfigured("STS_DURATION_SECONDS must be at least 900 (STS's minimum).")
STS_TIMEOUT_SECONDS = env.float("STS_TIMEOUT_SECONDS", default=5.0)
# Fernet key(s) for credentials cached in Redis, comma-separated (first encrypts, all decrypt);
# empty = derived from SECRET_KEY with HKDF.
CREDENTIALS_ENCRYPTION_KEY = env.str("CREDENTIALS_ENCRYPTION_KEY", default="")
# Cached credentials are handed out only while they have more than the SDKs' 300 s refresh margin
# plus this window left; after that the next request gets fresh ones.
CREDENTIALS_SAFETY_WINDOW_SECONDS = env.int("CREDENTIALS_SAFETY_WINDOW_SECONDS", default=300)
# Each worker reuses what it read of a user's cached credentials from Redis for this many
# seconds for unmetered requests (the server signing upload URLs and forms, or the rate off);
# metered requests always count in Redis (tokens/worker_copies.py). 0: no copies.
CREDENTIALS_LOCAL_SECONDS = env.float("CREDENTIALS_LOCAL_SECONDS", default=5.0)
# Ledger hand-out counts are batched in each worker and written at most this often (0: at once).
CREDENTIALS_SERVED_FLUSH_SECONDS = env.float("CREDENTIALS_SERVED_FLUSH_SECONDS", default=10.0)
# Session policy templates (policies/templates by default), see policies/services.py.
POLICY_TEMPLATES_DIR = env.path(
    "POLICY_TEMPLATES_DIR", default=str(BASE_DIR / "policies" / "templates")
)

# --- OSS --------------------------------------------------------------------------------------
OSS_BUCKET = _required("OSS_BUCKET", local_default="app-uploads")
OSS_REGION = _required("OSS_REGION", local_default="cn-hangzhou")
OSS_ENDPOINT = _required("OSS_ENDPOINT", local_default=_EMULATOR_ENDPOINT)
# What apps are told to upload to; differs from OSS_ENDPOINT when the server uses an internal one.
OSS_PUBLIC_ENDPOINT = env.str("OSS_PUBLIC_ENDPOINT", default=OSS_ENDPOINT)
OSS_SIGNATURE_VERSION = env.str("OSS_SIGNATURE_VERSION", default="v4")
OSS_PATH_STYLE = env.bool("OSS_PATH_STYLE", default=False)
STORAGE_PREFIX_TEMPLATE = env.str("STORAGE_PREFIX_TEMPLATE", default="users/{user_public_id}/")

# --- Upload callbacks (uploads/) --------------------------------------------------------------
OSS_CALLBACK_URL = _required(
    "OSS_CALLBACK_URL", local_default=f"http://127.0.0.1:{APP_PORT}/api/oss/callback/"
)
OSS_CALLBACK_KEY_URL_PREFIXES = env.list(
    "OSS_CALLBACK_KEY_URL_PREFIXES",
    default=(
        ["https://gosspublic.alicdn.com/", "http://gosspublic.alicdn.com/"]
        if PRODUCTION
        else [_EMULATOR_ENDPOINT + "/_emulator/"]
    ),
)

# --- Metrics (appserver/metrics/, docs/metrics.md) ------------------------------------------
# Who may read /metrics: a bearer token, an allow-list of networks, or both. Neither: 404. The
# local default lets this machine read it (make run); production exposes nothing until told.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
if METRICS_TOKEN and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 32 characters long.")
METRICS_ALLOWED_IPS = env.list(
    "METRICS_ALLOWED_IPS", default=[] if PRODUCTION else ["127.0.0.0/8", "::1/128"]
)
try:
    METRICS_ALLOWED_NETWORKS = tuple(
        ipaddress.ip_network(cidr.strip(), strict=False)
        for cidr in METRICS_ALLOWED_IPS
        if cidr.strip()
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS: {exc}.") from None

# --- Logging ----------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if PRODUCTION else "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "appserver.logging.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "appserver.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The SDKs log request details (including signed URLs) at DEBUG/INFO.
        "oss2": {"level": "WARNING"},
        # aliyunsdkcore logs STS's raw error messages at ERROR and bodies with secrets at DEBUG;
        # tokens/sts.py logs what matters itself.
        "aliyunsdkcore": {"level": "CRITICAL"},
    },
}

# --- Upload limits and quotas (uploads/) ------------------------------------------------------
UPLOAD_MAX_SIZE = env.int("UPLOAD_MAX_SIZE", default=1024**3)  # bytes, per object
UPLOAD_ALLOWED_CONTENT_TYPES = env.list(
    "UPLOAD_ALLOWED_CONTENT_TYPES",
    default=["image/*", "video/*", "audio/*", "application/pdf", "text/plain"],
)
UPLOAD_TICKET_TTL_SECONDS = env.int("UPLOAD_TICKET_TTL_SECONDS", default=3600)
UPLOAD_QUOTA_BYTES = env.int("UPLOAD_QUOTA_BYTES", default=5 * 1024**3)
UPLOAD_QUOTA_OBJECTS = env.int("UPLOAD_QUOTA_OBJECTS", default=10000)
DOWNLOAD_URL_TTL_SECONDS = env.int("DOWNLOAD_URL_TTL_SECONDS", default=300)
# Derived images listed with each image upload: name -> OSS IMG process ("image/...") or bucket
# style ("style/<name>"), as JSON. Each becomes a presigned URL in `variants`; {} turns them off.
IMAGE_VARIANTS = env.json(
    "IMAGE_VARIANTS",
    default={
        "thumbnail": "image/auto-orient,1/resize,m_lfit,w_256,h_256/format,webp",
        "preview": "image/auto-orient,1/resize,m_lfit,w_1280,h_1280/format,webp",
    },
)
if not isinstance(IMAGE_VARIANTS, dict) or not all(
    isinstance(name, str)
    and re.fullmatch(r"[a-z0-9_-]{1,32}", name)
    and isinstance(process, str)
    and re.fullmatch(r"(image/|style/)[^\s&#]{1,1000}", process)
    for name, process in IMAGE_VARIANTS.items()
):
    raise ImproperlyConfigured(
        'IMAGE_VARIANTS: a JSON object like {"thumbnail": "image/resize,w_256/format,webp"}, '
        "names of 1-32 lowercase letters, digits, - or _, processes starting image/ or style/."
    )
IMAGE_VARIANT_URL_TTL_SECONDS = env.int("IMAGE_VARIANT_URL_TTL_SECONDS", default=300)
# Where variant URLs point, when not OSS_PUBLIC_ENDPOINT: a CDN domain whose origin is the bucket.
IMAGE_VARIANT_ENDPOINT = env.str("IMAGE_VARIANT_ENDPOINT", default="")
# Signs the x:ticket callback variable; empty derives a key from SECRET_KEY (salted HMAC).
UPLOAD_CALLBACK_HMAC_KEY = env.str("UPLOAD_CALLBACK_HMAC_KEY", default="")
# Callback public keys that are never fetched: URL prefix -> PEM file shipped with the project.
_ALIBABA_CALLBACK_KEY = str(BASE_DIR / "uploads/keys/alibaba_callback_pub_key_v1.pem")
OSS_CALLBACK_PINNED_KEYS = {
    "https://gosspublic.alicdn.com/": _ALIBABA_CALLBACK_KEY,
    "http://gosspublic.alicdn.com/": _ALIBABA_CALLBACK_KEY,
}
# Other allowed key URLs (the emulator's) are fetched once, within this bound, then cached.
OSS_CALLBACK_KEY_FETCH_TIMEOUT_SECONDS = env.float(
    "OSS_CALLBACK_KEY_FETCH_TIMEOUT_SECONDS", default=1.5
)
# The server's own OSS calls (HeadObject/DeleteObject on the callback path): OSS gives the
# callback 5 s in all, so each call is bounded well below that.
OSS_TIMEOUT_SECONDS = env.float("OSS_TIMEOUT_SECONDS", default=1.5)
# Check a callback's size/type/ETag against HeadObject (the app writes the callback template,
# so the body's values are only as honest as the app). Off saves one OSS round trip.
UPLOAD_CALLBACK_HEAD_CHECK = env.bool("UPLOAD_CALLBACK_HEAD_CHECK", default=True)

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
