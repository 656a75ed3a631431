"""Scraping /metrics over real HTTP and reading it with the Prometheus client's own parser."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.uploads.conftest import live  # noqa: F401 - the fixture, for these tests too


class Scrape:
    """One scrape, parsed: families by name, and samples summed over a label subset."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, sample: str, **labels: str) -> float:
        return sum(
            s.value
            for family in self.families.values()
            for s in family.samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def labels(self, sample: str, name: str) -> set[str]:
        return {
            s.labels[name]
            for family in self.families.values()
            for s in family.samples
            if s.name == sample and name in s.labels
        }


def scrape(base_url: str, **headers: str) -> Scrape:
    response = requests.get(base_url + "/metrics", headers=headers, timeout=15)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    return Scrape(response.text)


@pytest.fixture(autouse=True)
def _served_counts_written_at_once(settings):
    # Hand-out counts left in memory would be flushed at interpreter exit, after the test
    # database is gone (as in tests/tokens).
    settings.CREDENTIALS_SERVED_FLUSH_SECONDS = 0
