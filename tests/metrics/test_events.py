"""The events worker's deliveries and the outbox backlog, as /metrics reports them: events
recorded, posted to a real receiver (one 500 first, then 200), and scraped before and after."""

from __future__ import annotations

import pytest

from tests.events.conftest import endpoint, receiver  # noqa: F401 - the fixtures
from tests.events.test_delivery import record, run_until_settled
from tests.metrics.conftest import scrape

pytestmark = pytest.mark.django_db(transaction=True)


def test_deliveries_and_the_backlog(live, endpoint, receiver):  # noqa: F811
    before = scrape(live.url)
    receiver.script = [500]
    record(n=2)
    waiting = scrape(live.url)
    assert waiting.value("appserver_events_outbox_backlog") == 2  # two events, not fanned out
    assert waiting.value("appserver_events_outbox_oldest_age_seconds") >= 0
    run_until_settled()
    after = scrape(live.url)

    def delta(outcome: str) -> float:
        name = "appserver_events_deliveries_total"
        return after.value(name, outcome=outcome) - before.value(name, outcome=outcome)

    assert (delta("delivered"), delta("failed"), delta("dead")) == (2, 1, 0)
    assert after.value("appserver_events_outbox_backlog") == 0
    assert after.value("appserver_events_outbox_oldest_age_seconds") == 0
