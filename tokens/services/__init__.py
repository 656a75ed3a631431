"""Temporary STS credentials for end users: the credentials service, one module per concern.

- ``service``: the public services (issue, forget a user, flush counts) and IssuedCredentials.
- ``single_flight``: one AssumeRole per (user, scope) per window across the fleet.
- ``sealing``: the cached entry, encrypted at rest and bound to its user, scope and policy.
- ``keys``: cache keys and this process's striped locks.
- ``rate``: the per-user "credentials" rate, counted in the round trip that reads the entry.
- ``ledger``: the CredentialGrant rows and the batched hand-out counts.
"""

from tokens.services.sealing import SDK_REFRESH_MARGIN_SECONDS
from tokens.services.service import (
    IssuedCredentials,
    credentials_cache_key,
    credentials_flush_served_counts,
    credentials_forget_local_copies,
    credentials_forget_user,
    credentials_issue,
)
from tokens.services.single_flight import session_name_for

__all__ = [
    "SDK_REFRESH_MARGIN_SECONDS",
    "IssuedCredentials",
    "credentials_cache_key",
    "credentials_flush_served_counts",
    "credentials_forget_local_copies",
    "credentials_forget_user",
    "credentials_issue",
    "session_name_for",
]
