"""The Grafana dashboard and the alert rules in docs/monitoring/ read metrics the server really
exposes: every name in every expression is in a scrape taken after real traffic (an upload with
its callback, credentials from STS and the cache, a sweep)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from appserver.metrics.shared import OUTBOX_METRICS
from tests.metrics.conftest import scrape

pytestmark = pytest.mark.django_db(transaction=True)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
_NAME = re.compile(r"\bappserver_[a-z0-9_]+")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def _family(sample_name: str) -> str:
    for suffix in _SUFFIXES:
        if sample_name.endswith(suffix):
            return sample_name[: -len(suffix)]
    return sample_name


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(p["targets"] for p in panels)
    return [target["expr"] for panel in panels for target in panel["targets"]]


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())["groups"][0]["rules"]
    assert {"UploadCallbackLatencyNearOssLimit", "StsAssumeRoleErrors"} <= {
        rule["alert"] for rule in rules
    }
    return [rule["expr"] for rule in rules]


def test_every_expression_reads_metrics_a_scrape_has(live, user, settings):
    settings.SWEEP_GRACE_SECONDS = 0
    ticket = live.ticket(user, filename="a.txt", size=5, content_type="text/plain")
    headers = {**ticket["headers"], "Content-Type": "text/plain"}
    assert live.bucket(user).put_object(ticket["key"], b"hello", headers=headers).status == 200
    assert live.api("GET", "/api/sts/credentials/", user).status_code == 200
    call_command("sweep_uploads", stdout=open("/dev/null", "w"))  # noqa: SIM115
    exposed = set(scrape(live.url).families)

    exprs = _dashboard_exprs() + _alert_exprs()
    used = {_family(name) for expr in exprs for name in _NAME.findall(expr)}
    assert len(used) >= 15  # the pattern finds them
    # The outbox gauges appear once the events app registers its backlog source
    # (test_recorded.py shows they then do); every other name must be there now.
    assert sorted(used - exposed - set(OUTBOX_METRICS)) == []
    assert {
        "appserver_callback_duration_seconds",
        "appserver_sts_assume_role_errors",
        "appserver_sts_assume_role_calls",
    } <= used
