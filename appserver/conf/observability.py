"""What the server shows its operators: who may read /metrics, and the logs' level and format."""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ImproperlyConfigured

from appserver.conf.environment import PRODUCTION, env

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
