"""Who may read /metrics: the token, the allow-list, both, or nobody (404), and what a refused
scraper is told. The test client connects from 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from tests.accounts.test_production_settings import PRODUCTION_ENV
from tests.processes import run_manage

TOKEN = "m" * 24 + "-metrics-token-for-tests"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def _code(response) -> str:
    return response.json()["error"]["code"]


def test_the_local_default_lets_this_machine_read_it(client, settings):
    assert settings.METRICS_ALLOWED_NETWORKS == LOOPBACK
    assert settings.METRICS_TOKEN == ""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# TYPE appserver_http_requests_total counter" in response.content


def test_another_address_is_refused(client):
    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert (response.status_code, _code(response)) == (403, "metrics_forbidden")
    assert b"appserver_" not in response.content


def test_an_ipv4_peer_on_a_dual_stack_socket_is_matched_as_ipv4(client):
    assert client.get("/metrics", REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


@pytest.mark.parametrize(
    "header", [{"HTTP_X_FORWARDED_FOR": "203.0.113.9"}, {"HTTP_FORWARDED": "for=203.0.113.9"}]
)
def test_a_request_that_came_through_a_proxy_is_refused(client, header):
    # A public load balancer on an allowed address must not hand the page to the internet.
    response = client.get("/metrics", **header)
    assert (response.status_code, _code(response)) == (403, "metrics_forbidden")


def test_with_neither_set_the_page_does_not_exist(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = ()
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics")
    assert (response.status_code, _code(response)) == (404, "not_found")


def test_the_token_alone_admits_any_address(client, settings, caplog):
    caplog.set_level(logging.DEBUG)
    settings.METRICS_ALLOWED_NETWORKS = ()
    settings.METRICS_TOKEN = TOKEN
    right = client.get("/metrics", REMOTE_ADDR="198.51.100.7", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert right.status_code == 200
    for authorization in ("", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}"):
        headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
        wrong = client.get("/metrics", REMOTE_ADDR="198.51.100.7", **headers)
        assert (wrong.status_code, _code(wrong)) == (401, "not_authenticated")
        assert wrong["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert TOKEN not in wrong.content.decode()
    assert TOKEN[:16] not in caplog.text


def test_with_both_set_both_must_hold(client, settings):
    settings.METRICS_TOKEN = TOKEN
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    assert client.get("/metrics", **bearer).status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", **bearer).status_code == 403


def test_only_get_and_head(client):
    response = client.post("/metrics")
    assert (response.status_code, _code(response)) == (405, "method_not_allowed")
    assert response["Allow"] == "GET, HEAD"
    assert client.head("/metrics").status_code == 200


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("METRICS_TOKEN", "short", "METRICS_TOKEN must be at least 32 characters long."),
        (
            "METRICS_ALLOWED_IPS",
            "10.0.0.0/8,not-a-network",
            "METRICS_ALLOWED_IPS: 'not-a-network' does not appear to be an IPv4 or IPv6 network.",
        ),
    ],
)
def test_a_bad_setting_stops_the_start(name, value, message):
    result = run_manage("check", env={"APP_ENV": "local", name: value})
    assert result.returncode == 1
    assert result.stderr == f"Configuration error: {message}\n"


def test_production_exposes_nothing_until_told():
    env = {
        **PRODUCTION_ENV,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    code = (
        "from django.conf import settings; "
        "print(settings.METRICS_ALLOWED_NETWORKS, repr(settings.METRICS_TOKEN))"
    )
    result = run_manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "() ''"
