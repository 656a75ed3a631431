"""docs/metrics.md describes every metric a scrape exposes and every refusal reason a label can
carry: a metric or a reason added without its documentation fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

from appserver.metrics.definitions import STS_CODES
from tests.metrics.conftest import scrape
from uploads.models import CallbackRefusal

DOC = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
_SUFFIX = {"counter": "_total", "histogram": "", "gauge": ""}


@pytest.mark.django_db(transaction=True)
def test_every_exposed_metric_is_documented(live, settings):
    call_command("sweep_uploads", stdout=open("/dev/null", "w"))  # noqa: SIM115
    families = scrape(live.url).families.values()
    ours = [f for f in families if f.name.startswith("appserver_")]
    assert len(ours) >= 15
    undocumented = [f.name for f in ours if f"`{f.name}{_SUFFIX.get(f.type, '')}`" not in DOC]
    assert undocumented == []


def test_every_refusal_reason_and_sts_code_is_documented():
    assert [r for r in CallbackRefusal.Reason.values if f"`{r}`" not in DOC] == []
    assert sorted(code for code in STS_CODES if f"`{code}`" not in DOC) == []
