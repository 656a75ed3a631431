"""Alibaba Cloud: the server's own RAM user, STS (tokens/), OSS and where OSS sends upload
callbacks (uploads/).

Locally every default is what `python -m emulator` serves with no flags; production has no
default for any of the account's values.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from appserver.conf.environment import BASE_DIR, PRODUCTION, env, required

# --- Alibaba Cloud: the server's own RAM user -------------------------------------------------
# Used to call AssumeRole and for the server's own OSS work (removing refused objects,
# reconciliation, signed download URLs). Locally: what `python -m emulator` serves with no flags
# (its development root key pair, role, bucket and region; placeholders, not secrets). Production
# has no default for any of them.
ALIBABA_ACCESS_KEY_ID = required("ALIBABA_ACCESS_KEY_ID", local_default="LTAIemulatorRootKey01")
ALIBABA_ACCESS_KEY_SECRET = required(
    "ALIBABA_ACCESS_KEY_SECRET",
    local_default="emulator-root-secret-for-local-use-only",
)
# The embedded default's ports, the same variables `make run` reads (scripts/run_local.py), so
# `EMULATOR_PORT=9101 python manage.py reconcile` talks to `EMULATOR_PORT=9101 make run`'s emulator.
EMULATOR_PORT = env.int("EMULATOR_PORT", default=9100)
APP_PORT = env.int("APP_PORT", default=8000)
_EMULATOR_ENDPOINT = f"http://127.0.0.1:{EMULATOR_PORT}"

# --- STS (tokens/) ----------------------------------------------------------------------------
STS_ENDPOINT = required("STS_ENDPOINT", local_default=_EMULATOR_ENDPOINT)
STS_ROLE_ARN = required("STS_ROLE_ARN", local_default="acs:ram::1000000000000001:role/app-uploader")
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
OSS_BUCKET = required("OSS_BUCKET", local_default="app-uploads")
OSS_REGION = required("OSS_REGION", local_default="cn-hangzhou")
OSS_ENDPOINT = required("OSS_ENDPOINT", local_default=_EMULATOR_ENDPOINT)
# What apps are told to upload to; differs from OSS_ENDPOINT when the server uses an internal one.
OSS_PUBLIC_ENDPOINT = env.str("OSS_PUBLIC_ENDPOINT", default=OSS_ENDPOINT)
OSS_SIGNATURE_VERSION = env.str("OSS_SIGNATURE_VERSION", default="v4")
OSS_PATH_STYLE = env.bool("OSS_PATH_STYLE", default=False)
STORAGE_PREFIX_TEMPLATE = env.str("STORAGE_PREFIX_TEMPLATE", default="users/{user_public_id}/")

# --- Upload callbacks (uploads/) --------------------------------------------------------------
OSS_CALLBACK_URL = required(
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
