"""Prometheus metrics: what the server counts, and the one place that names every metric.

- In-process metrics (requests, callbacks, confirmations, quota refusals, AssumeRole, cached
  credentials) are prometheus-client objects in `definitions`. Under gunicorn they run in
  multiprocess mode: gunicorn.conf.py points ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory
  before the workers start, each worker writes its values to its own files there, and a scrape
  served by any worker adds them all up (`views`). Without the variable (tests, a shell,
  runserver) the default registry of the one process is used.
- Work done in other processes (`manage.py sweep_uploads`, event deliveries) is counted in the
  shared cache instead (`shared`), so every app server's /metrics reports it, fleet-wide.
- Values read at scrape time from the database (the events outbox backlog) come from sources
  the owning app registers (`shared.scrape_source_register`).

Labels never carry user ids or raw paths: the endpoint label is the URL route pattern, reasons
come from fixed sets of codes (docs/metrics.md lists every metric and label).
"""

from __future__ import annotations

import os

# prometheus-client picks its storage when first imported: a named directory that does not
# exist (a management command run with the server's environment) would fail at the first
# metric, so it is made here first.
_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if _MULTIPROC_DIR:
    os.makedirs(_MULTIPROC_DIR, exist_ok=True)

from appserver.metrics.definitions import (  # noqa: E402 - after the directory exists
    callback_observe,
    confirmation_observe,
    credentials_served,
    quota_refused,
    sts_call_observe,
)
from appserver.metrics.shared import (  # noqa: E402
    EVENTS_DELIVERY_OUTCOMES,
    event_delivery_record,
    events_outbox_source_register,
    sweep_record,
)

__all__ = [
    "EVENTS_DELIVERY_OUTCOMES",
    "callback_observe",
    "confirmation_observe",
    "credentials_served",
    "event_delivery_record",
    "events_outbox_source_register",
    "quota_refused",
    "sts_call_observe",
    "sweep_record",
]
