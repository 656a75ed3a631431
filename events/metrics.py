"""Counts for /metrics (appserver.metrics, issue #17 item 3), when that module is present:
deliveries delivered, failed (to be retried) and dead (parked), and the outbox backlog read at
scrape time. Without it these are no-ops; metrics never fail a delivery."""

from __future__ import annotations

try:
    from appserver import metrics as _metrics
except ImportError:  # the metrics module is not in this build
    _metrics = None


def _count(outcome: str) -> None:
    record = getattr(_metrics, "event_delivery_record", None)
    if record is not None:
        record(outcome=outcome)


def delivered() -> None:
    _count("delivered")


def retrying() -> None:
    _count("failed")


def parked() -> None:
    _count("dead")


def outbox_source_register() -> None:
    register = getattr(_metrics, "events_outbox_source_register", None)
    if register is not None:
        from events.delivery import backlog

        register(backlog)
