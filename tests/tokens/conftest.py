from __future__ import annotations

import pytest
import requests

from tests.helpers import bearer


class CredentialsClient:
    """Calls /api/sts/credentials/ on the live server over real HTTP."""

    def __init__(self, base_url: str) -> None:
        self.url = f"{base_url}/api/sts/credentials/"

    def get(self, user, scope: str | None = None, method: str = "GET", **headers: str):
        params = {"scope": scope} if scope is not None else None
        return requests.request(
            method, self.url, params=params, headers={**bearer(user), **headers}, timeout=30
        )


@pytest.fixture(autouse=True)
def _served_counts_written_at_once(settings):
    # Hand-out counts left in memory would be flushed at interpreter exit, after the test
    # database is gone. test_ledger_counts_are_batched covers the batched default.
    settings.CREDENTIALS_SERVED_FLUSH_SECONDS = 0


@pytest.fixture
def credentials(live_server, alibaba, settings) -> CredentialsClient:
    return CredentialsClient(live_server.url)
