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


@pytest.fixture
def credentials(live_server, alibaba) -> CredentialsClient:
    return CredentialsClient(live_server.url)
