"""The events worker's counts for /metrics (appserver.metrics): deliveries delivered, failed (to be
retried) and dead (parked), and the outbox backlog, read at scrape time."""

from __future__ import annotations

from appserver import metrics


def delivered() -> None:
    metrics.event_delivery_record(outcome="delivered")


def retrying() -> None:
    metrics.event_delivery_record(outcome="failed")


def parked() -> None:
    metrics.event_delivery_record(outcome="dead")


def outbox_source_register() -> None:
    from events.delivery import backlog  # events.delivery imports this module

    metrics.events_outbox_source_register(backlog)
