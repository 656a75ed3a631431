"""Metrics of work done outside the web workers, kept in the shared cache, and values read at
scrape time.

`manage.py sweep_uploads` runs in its own process (a cron job, another container): its counts
cannot live in a web worker's memory or in gunicorn's metrics directory. They are added to
counters in the Django cache (Redis in production, shared by every app server), and every
scrape reads them back with one round trip. Each metric has a fixed set of label values, so
the keys to read are known in advance. Every app server reports the same fleet-wide values:
aggregate them with max(), not sum() (docs/metrics.md).

Recording never fails the work it describes: with the cache down, the numbers are lost and a
warning is logged. Counters restart from zero if Redis loses its keys, which Prometheus'
rate() treats as a counter reset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from django.core.cache import cache
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

logger = logging.getLogger(__name__)

_KEY = "metrics:v1:"
_MICRO = 1_000_000  # sums are kept in integer microseconds: the cache increments integers

SWEEP_OUTCOMES = ("ok", "failed")
# uploads.sweep.SweepResult's counts of changes made (not of things looked at).
SWEEP_REPAIR_KINDS = (
    "confirmed",
    "refused",
    "expired",
    "adopted",
    "deleted",
    "repaired",
    "missing",
    "restored",
)
SWEEP_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
EVENTS_DELIVERY_OUTCOMES = ("delivered", "failed", "dead")


def _counter_keys(name: str, values: tuple[str, ...]) -> list[str]:
    return [f"{_KEY}{name}:{value}" for value in values]


def _histogram_keys(name: str, buckets: tuple[float, ...]) -> list[str]:
    edges = [str(le) for le in buckets] + ["inf"]
    return [f"{_KEY}{name}:le:{edge}" for edge in edges] + [f"{_KEY}{name}:sum_us"]


_SWEEP_RUNS = _counter_keys("sweep_runs", SWEEP_OUTCOMES)
_SWEEP_REPAIRS = _counter_keys("sweep_repairs", SWEEP_REPAIR_KINDS)
_SWEEP_DURATION = _histogram_keys("sweep_duration", SWEEP_BUCKETS)
_SWEEP_LAST_SUCCESS = f"{_KEY}sweep_last_success"
_DELIVERIES = _counter_keys("events_deliveries", EVENTS_DELIVERY_OUTCOMES)
_ALL_KEYS = [
    *_SWEEP_RUNS,
    *_SWEEP_REPAIRS,
    *_SWEEP_DURATION,
    _SWEEP_LAST_SUCCESS,
    *_DELIVERIES,
]


def _add(increments: dict[str, int]) -> None:
    for key, amount in increments.items():
        if amount and not cache.add(key, amount, timeout=None):
            try:
                cache.incr(key, amount)
            except ValueError:  # evicted between the two calls
                cache.add(key, amount, timeout=None)


def _bucket_key(keys: list[str], buckets: tuple[float, ...], value: float) -> str:
    for index, le in enumerate(buckets):
        if value <= le:
            return keys[index]
    return keys[len(buckets)]


def sweep_record(*, seconds: float, outcome: str, repairs: dict[str, int]) -> None:
    """One finished (or failed) sweep: its duration and the changes it made, by kind."""
    increments = {_SWEEP_RUNS[SWEEP_OUTCOMES.index(outcome)]: 1}
    increments[_bucket_key(_SWEEP_DURATION, SWEEP_BUCKETS, seconds)] = 1
    increments[_SWEEP_DURATION[-1]] = round(seconds * _MICRO)
    for kind, key in zip(SWEEP_REPAIR_KINDS, _SWEEP_REPAIRS, strict=True):
        increments[key] = int(repairs.get(kind, 0))
    try:
        _add(increments)
        if outcome == "ok":
            cache.set(_SWEEP_LAST_SUCCESS, time.time(), timeout=None)
    except Exception as exc:  # metrics never fail the sweep
        logger.warning("Sweep metrics not recorded: %s", type(exc).__name__)


def event_delivery_record(*, outcome: str, count: int = 1) -> None:
    """Webhook deliveries: `outcome` is delivered, failed (will be retried) or dead (given up)."""
    try:
        _add({_DELIVERIES[EVENTS_DELIVERY_OUTCOMES.index(outcome)]: count})
    except Exception as exc:  # metrics never fail a delivery
        logger.warning("Delivery metrics not recorded: %s", type(exc).__name__)


# Present in a scrape only once the events app has registered its source.
OUTBOX_METRICS = ("appserver_events_outbox_backlog", "appserver_events_outbox_oldest_age_seconds")
# (deliveries and events outstanding, age in seconds of the oldest such event or None), read at
# each scrape (events.delivery.backlog).
OutboxSource = Callable[[], tuple[int, float | None]]
_outbox_source: list[OutboxSource] = []


def events_outbox_source_register(read: OutboxSource | None) -> OutboxSource | None:
    """Called once by the events app (its AppConfig.ready) with a function that reads the
    outbox backlog from the database; /metrics calls it at every scrape. Returns the source it
    replaces (None: none)."""
    previous = _outbox_source[0] if _outbox_source else None
    _outbox_source[:] = [read] if read is not None else []
    return previous


def _counter(name: str, documentation: str, label: str, values, keys, read) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, key in zip(values, keys, strict=True):
        family.add_metric([value], float(read.get(key, 0)))
    return family


class SharedCollector:
    """The cache-backed metrics and the scrape-time sources, for the /metrics view."""

    def collect(self) -> Iterator[Metric]:
        try:
            read = cache.get_many(_ALL_KEYS)
            up = 1.0
        except Exception as exc:
            logger.warning("Shared metrics unavailable: %s", type(exc).__name__)
            read, up = None, 0.0
        yield GaugeMetricFamily(
            "appserver_metrics_shared_up",
            "1 when the shared cache answered this scrape (the sweep and delivery metrics).",
            value=up,
        )
        if read is not None:
            yield from self._from_cache(read)
        yield from self._outbox()

    def _from_cache(self, read: dict) -> Iterator[Metric]:
        yield _counter(
            "appserver_sweep_runs",
            "Upload sweeps (manage.py sweep_uploads) that ran, by outcome; fleet-wide.",
            "outcome",
            SWEEP_OUTCOMES,
            _SWEEP_RUNS,
            read,
        )
        yield _counter(
            "appserver_sweep_repairs",
            "Changes made by upload sweeps, by kind; fleet-wide.",
            "kind",
            SWEEP_REPAIR_KINDS,
            _SWEEP_REPAIRS,
            read,
        )
        running, buckets = 0, []
        for le, key in zip((*SWEEP_BUCKETS, float("inf")), _SWEEP_DURATION[:-1], strict=True):
            running += int(read.get(key, 0))
            buckets.append(("+Inf" if le == float("inf") else str(le), running))
        duration = HistogramMetricFamily(
            "appserver_sweep_duration_seconds",
            "Duration of upload sweeps, failed ones included; fleet-wide.",
        )
        duration.add_metric([], buckets, int(read.get(_SWEEP_DURATION[-1], 0)) / _MICRO)
        yield duration
        if _SWEEP_LAST_SUCCESS in read:
            yield GaugeMetricFamily(
                "appserver_sweep_last_success_timestamp_seconds",
                "Unix time at which the last successful upload sweep finished.",
                value=float(read[_SWEEP_LAST_SUCCESS]),
            )
        yield _counter(
            "appserver_events_deliveries",
            "Webhook delivery attempts by outcome (delivered; failed: retried later; dead: "
            "given up); fleet-wide.",
            "outcome",
            EVENTS_DELIVERY_OUTCOMES,
            _DELIVERIES,
            read,
        )

    def _outbox(self) -> Iterator[Metric]:
        if not _outbox_source:
            return
        try:
            pending, oldest_age = _outbox_source[0]()
        except Exception as exc:
            logger.warning("Outbox backlog unavailable: %s", type(exc).__name__)
            return
        yield GaugeMetricFamily(
            OUTBOX_METRICS[0],
            "Webhook work outstanding: pending deliveries plus events not yet fanned out to "
            "their endpoints; fleet-wide.",
            value=float(pending),
        )
        yield GaugeMetricFamily(
            OUTBOX_METRICS[1],
            "Age of the oldest undelivered event (0 when none); fleet-wide.",
            value=float(oldest_age or 0.0),
        )
