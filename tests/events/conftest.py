from __future__ import annotations

import pytest

from events.services import endpoint_create
from tests.events.receiver import Receiver


@pytest.fixture
def receiver():
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.close()


@pytest.fixture
def endpoint(db, receiver, settings):
    # Fast retries, short timeouts: the tests wait for outcomes, never assert times.
    settings.EVENTS_RETRY_BASE_SECONDS = 0.01
    settings.EVENTS_RETRY_MAX_SECONDS = 0.05
    settings.EVENTS_READ_TIMEOUT_SECONDS = 0.5
    settings.EVENTS_ALLOW_PRIVATE_ADDRESSES = True  # the receiver is on 127.0.0.1
    endpoint, secret = endpoint_create(url=receiver.url, name="test receiver")
    receiver.secret = secret
    return endpoint
