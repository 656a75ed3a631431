"""After real traffic (the app under live_server, the emulator as STS and OSS, oss2 as the app),
/metrics is scraped over HTTP and read with the Prometheus client's parser: every number moved
by exactly what happened. Deltas, because the process's counters outlive a test."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from appserver import metrics
from tests.metrics.conftest import scrape
from uploads.models import UploadTicket

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = "appserver_http_requests_total"


def test_requests_are_counted_by_route_pattern_never_by_path(live, user):
    before = scrape(live.url)
    assert live.api("GET", "/api/uploads/usage/", user).status_code == 200
    assert live.api("GET", "/api/uploads/usage/", user).status_code == 200
    assert live.api("GET", "/api/uploads/987654321/", user).status_code == 404
    assert live.api("GET", "/no/such/page-123456789", user).status_code == 404
    after = scrape(live.url)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    usage = {"endpoint": "/api/uploads/usage/", "method": "GET"}
    assert delta(REQUESTS, status="200", **usage) == 2
    assert delta("appserver_http_request_duration_seconds_count", **usage) == 2
    assert delta("appserver_http_request_duration_seconds_bucket", le="+Inf", **usage) == 2
    detail = {"endpoint": "/api/uploads/<int:upload_id>/", "method": "GET", "status": "404"}
    assert delta(REQUESTS, **detail) == 1
    assert delta(REQUESTS, endpoint="<unrouted>", method="GET", status="404") == 1
    # The scrape before this one is counted too, under its own route.
    assert delta(REQUESTS, endpoint="/metrics", method="GET", status="200") == 1
    assert "987654321" not in after.text and "123456789" not in after.text
    assert user.public_id not in after.text


def test_callbacks_confirmations_and_quota_refusals(live, user, settings):
    before = scrape(live.url)
    bucket = live.bucket(user)
    # Accepted: a real upload, OSS (the emulator) calls back.
    ticket = live.ticket(user, filename="a.txt", size=5, content_type="text/plain")
    headers = {**ticket["headers"], "Content-Type": "text/plain"}
    assert bucket.put_object(ticket["key"], b"hello", headers=headers).status == 200
    # Refused: more bytes than the ticket declared.
    ticket = live.ticket(user, filename="b.txt", size=2, content_type="text/plain")
    headers = {**ticket["headers"], "Content-Type": "text/plain"}
    assert bucket.put_object(ticket["key"], b"too long", headers=headers).status == 200
    # Rejected: not signed by OSS.
    forged = live.post_callback(b"object=x", signer=None, key_url="http://127.0.0.1:9/key.pem")
    rejected_code = forged.json()["error"]["code"]
    assert forged.status_code in (400, 403)
    # A lost callback, then its confirmation; a confirmation of a ticket that is not there.
    unheard = live.upload_unheard(user, b"stored, unheard")
    confirm = f"/api/uploads/tickets/{unheard['id']}/confirm/"
    assert live.api("POST", confirm, user).json()["ok"] is True
    missing = "/api/uploads/tickets/00000000-0000-4000-8000-000000000000/confirm/"
    assert live.api("POST", missing, user).status_code == 404
    # The quota, at the ticket.
    settings.UPLOAD_QUOTA_BYTES = 10
    refused = live.api(
        "POST",
        "/api/uploads/tickets/",
        user,
        json={"filename": "c.txt", "size": 100, "content_type": "text/plain"},
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "quota_exceeded")
    after = scrape(live.url)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    callbacks = "appserver_callbacks_total"
    assert delta(callbacks, outcome="accepted", reason="none") == 1
    assert delta(callbacks, outcome="refused", reason="size_mismatch") == 1
    assert delta(callbacks, outcome="rejected", reason=rejected_code) == 1
    assert delta(callbacks) == 3  # the unheard upload's callback never reached the server
    assert delta("appserver_callback_duration_seconds_count") == 3
    assert delta("appserver_callback_duration_seconds_bucket", le="5.0") == 3
    buckets = after.labels("appserver_callback_duration_seconds_bucket", "le")
    assert {"4.0", "4.5", "5.0", "6.0"} <= buckets
    confirmations = "appserver_confirmations_total"
    assert delta(confirmations, outcome="accepted", reason="none") == 1
    assert delta(confirmations, outcome="error", reason="not_found") == 1
    assert delta("appserver_quota_refusals_total", stage="ticket") == 1
    assert delta("appserver_quota_refusals_total") == 1


def test_assume_role_calls_errors_and_credentials_from_the_cache(live, user, other_user, alibaba):
    before = scrape(live.url)
    assert live.api("GET", "/api/sts/credentials/", user).status_code == 200  # STS
    assert live.api("GET", "/api/sts/credentials/", user).status_code == 200  # the cache
    alibaba.sts.throttle_next(1)
    assert live.api("GET", "/api/sts/credentials/", other_user).status_code == 503
    after = scrape(live.url)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("appserver_sts_assume_role_calls_total", outcome="ok") == 1
    assert delta("appserver_sts_assume_role_calls_total", outcome="throttled") == 1
    errors = "appserver_sts_assume_role_errors_total"
    assert delta(errors, kind="throttled", code="Throttling.User") == 1
    assert delta(errors) == 1
    assert delta("appserver_sts_assume_role_duration_seconds_count") == 2
    assert delta("appserver_credentials_served_total", source="sts") == 1
    assert delta("appserver_credentials_served_total", source="cache") == 1


def test_sweeps_are_counted_fleet_wide_through_the_cache(live, user, settings):
    settings.SWEEP_GRACE_SECONDS = 0
    before = scrape(live.url)
    live.upload_unheard(user, b"stored, unheard")  # the sweep confirms it
    never = live.ticket(user, filename="n.txt", size=9, content_type="text/plain")
    UploadTicket.objects.filter(pk=never["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )  # the sweep expires it
    call_command("sweep_uploads", stdout=open("/dev/null", "w"))  # noqa: SIM115
    after = scrape(live.url)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("appserver_sweep_runs_total", outcome="ok") == 1
    assert delta("appserver_sweep_runs_total", outcome="failed") == 0
    assert delta("appserver_sweep_repairs_total", kind="confirmed") == 1
    assert delta("appserver_sweep_repairs_total", kind="expired") == 1
    assert delta("appserver_sweep_repairs_total") == 2
    assert delta("appserver_sweep_duration_seconds_count") == 1
    assert delta("appserver_sweep_duration_seconds_bucket", le="+Inf") == 1
    finished = after.value("appserver_sweep_last_success_timestamp_seconds")
    assert abs(finished - timezone.now().timestamp()) < 120
    assert after.value("appserver_metrics_shared_up") == 1


def test_event_deliveries_and_the_outbox_backlog(live):
    """The names the events app records with: deliveries through the shared cache, the backlog
    read from its source at each scrape."""
    before = scrape(live.url)
    metrics.event_delivery_record(outcome="delivered", count=3)
    metrics.event_delivery_record(outcome="failed")
    previous = metrics.events_outbox_source_register(lambda: (7, 42.5))
    try:
        after = scrape(live.url)
    finally:
        metrics.events_outbox_source_register(previous)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("appserver_events_deliveries_total", outcome="delivered") == 3
    assert delta("appserver_events_deliveries_total", outcome="failed") == 1
    assert delta("appserver_events_deliveries_total", outcome="dead") == 0
    assert after.value("appserver_events_outbox_backlog") == 7
    assert after.value("appserver_events_outbox_oldest_age_seconds") == 42.5
